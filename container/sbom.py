"""Complete the image's CycloneDX SBOM: cyclonedx-py's Python components, plus what it cannot see.

Usage: python sbom.py PYTHON_BOM WHEELS_DIR OS_DB_DIR FACTS_JSON OUT

- PYTHON_BOM: ``cyclonedx-py requirements`` of the image's locks (the app's and allocscope's);
  each Python component gains the SHA-256 of the very wheel the image installed (found in
  WHEELS_DIR) and that wheel's file name;
- OS_DB_DIR: the runtime base's package database, copied out of it: Debian's
  ``status.d/`` (one file per package, as distroless images keep it) or Wolfi's apk
  ``installed``; every package becomes a component with its version and purl;
- FACTS_JSON: the image's name, version, revision, creation time, bases, the interpreter,
  jemalloc's version and the FIPS provider, as build-image.sh knows them.

Standard library only. The result goes to OUT (CycloneDX 1.6 JSON).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_hashes(wheels: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(name, version) -> (file name, sha256) of every wheel under ``wheels``."""
    found = {}
    for whl in sorted(wheels.rglob("*.whl")):
        name, version = whl.name.split("-")[:2]
        found[(norm(name), version)] = (whl.name, hashlib.sha256(whl.read_bytes()).hexdigest())
    return found


def stanzas(text: str) -> list[dict[str, str]]:
    """RFC 822-style stanzas (dpkg status): continuation lines are dropped."""
    out, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = {}
        elif not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


def os_packages(db: Path, distro: str) -> list[dict[str, Any]]:
    """Components for the runtime's system packages (Debian status.d, or apk's installed)."""
    comps = []
    if (db / "status.d").is_dir():
        for f in sorted((db / "status.d").iterdir()):
            for p in stanzas(f.read_text(errors="replace")):
                if "Package" not in p:
                    continue
                purl = f"pkg:deb/debian/{p['Package']}@{p.get('Version', '')}"
                purl += f"?arch={p.get('Architecture', '')}&distro={distro}"
                comps.append(_os_comp(p["Package"], p.get("Version", ""), purl, p.get("Source")))
    elif (db / "installed").is_file():
        for block in (db / "installed").read_text(errors="replace").split("\n\n"):
            fields = dict(ln.split(":", 1) for ln in block.splitlines() if ln[1:2] == ":")
            if "P" in fields:
                name, version, arch = fields["P"], fields.get("V", ""), fields.get("A", "")
                purl = f"pkg:apk/wolfi/{name}@{version}?arch={arch}"
                comps.append(_os_comp(fields["P"], fields.get("V", ""), purl, fields.get("o")))
    return comps


def _os_comp(name: str, version: str, purl: str, source: str | None) -> dict[str, Any]:
    comp: dict[str, Any] = {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
        "properties": [{"name": "allocscope:layer", "value": "runtime base (system package)"}],
    }
    if source:
        comp["properties"].append({"name": "allocscope:source-package", "value": source})
    return comp


def python_components(bom: dict[str, Any], wheels: Path) -> list[dict[str, Any]]:
    hashes = wheel_hashes(wheels)
    comps = []
    for c in bom.get("components", []):
        key = (norm(c["name"]), c.get("version", ""))
        if key not in hashes:
            raise SystemExit(f"sbom: no wheel for {c['name']}=={c.get('version')} in {wheels}")
        wheel, digest = hashes[key]
        c = {k: v for k, v in c.items() if k not in ("externalReferences", "description")}
        c["bom-ref"] = c["purl"]
        c["hashes"] = [{"alg": "SHA-256", "content": digest}]
        c["properties"] = [
            {"name": "allocscope:wheel", "value": wheel},
            {"name": "allocscope:layer", "value": "/app/vendor (pip --require-hashes)"},
        ]
        comps.append(c)
    return comps


def extra_components(facts: dict[str, str]) -> list[dict[str, Any]]:
    """What neither pip nor the runtime's package database list: copied or built files."""
    jemalloc = facts["jemalloc_version"]
    return [
        {
            "type": "library",
            "bom-ref": "jemalloc",
            "name": "jemalloc",
            "version": jemalloc,
            "description": "/usr/lib/libjemalloc.so.2, copied from the builder "
            f"({facts['builder']}, package {facts['jemalloc_package']}); LD_PRELOAD",
        },
        {
            "type": "library",
            "bom-ref": "openssl-fips-provider",
            "name": "openssl-fips-provider",
            "version": facts.get("fips_version", ""),
            "description": facts.get("fips_provider", ""),
        },
    ]


def main(argv: list[str]) -> int:
    bom_path, wheels, db, facts_path, out = (Path(a) for a in argv[1:6])
    bom = json.loads(bom_path.read_text())
    facts = json.loads(facts_path.read_text())
    components = [
        *python_components(bom, wheels),
        *os_packages(db, facts.get("distro", "")),
        *extra_components(facts),
    ]
    image = facts["image"]
    doc = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": facts["created"],
            "tools": bom.get("metadata", {}).get("tools", {}),
            "component": {
                "type": "container",
                "bom-ref": image,
                "name": image.rsplit(":", 1)[0],
                "version": facts["version"],
                "properties": [
                    {"name": f"allocscope:{k}", "value": str(facts[k])}
                    for k in (
                        "revision",
                        "platform",
                        "runtime",
                        "builder",
                        "python",
                        "app_src",
                        "command",
                    )
                ],
            },
        },
        "components": components,
        "dependencies": [
            {"ref": image, "dependsOn": [c["bom-ref"] for c in components]},
            *({"ref": c["bom-ref"], "dependsOn": []} for c in components),
        ],
    }
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
