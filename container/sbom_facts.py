"""The facts the image's SBOM states (container/sbom.py's FACTS_JSON), as build-image.sh knows them.

Usage: python sbom_facts.py IMAGE_JSON KEY=VALUE... > FACTS_JSON

IMAGE_JSON is what the built image says of itself (its interpreter and jemalloc versions);
each KEY=VALUE adds a fact (image, version, revision, created, platform, runtime, builder,
app_src, command, distro, fips_provider). The FIPS provider's version is read from its
description ("OpenSSL FIPS provider 3.0.19 built from source, ..."). Standard library only.
"""

from __future__ import annotations

import json
import sys

REQUIRED = (
    "image",
    "version",
    "revision",
    "created",
    "platform",
    "runtime",
    "builder",
    "app_src",
    "command",
    "distro",
    "fips_provider",
)


def facts(image_json: str, pairs: list[str]) -> dict[str, str]:
    with open(image_json, encoding="utf-8") as f:
        found: dict[str, str] = json.load(f)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in REQUIRED:
            raise SystemExit(
                f"sbom_facts: expected KEY=VALUE with KEY one of {REQUIRED}, not {pair!r}"
            )
        found[key] = value
    missing = [k for k in REQUIRED if k not in found]
    if missing:
        raise SystemExit(f"sbom_facts: missing {', '.join(missing)}")
    found["jemalloc_package"] = "copied from the builder"
    words = found["fips_provider"].split()
    found["fips_version"] = words[3] if words[:3] == ["OpenSSL", "FIPS", "provider"] else "unknown"
    return found


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print(json.dumps(facts(sys.argv[1], sys.argv[2:])))
