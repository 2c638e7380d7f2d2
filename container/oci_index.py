"""Make one multi-architecture reference of single-platform images in an OCI image layout.

Usage: python oci_index.py LAYOUT TAG REF...

LAYOUT is an OCI image layout (as ``skopeo copy docker-daemon:IMG oci:LAYOUT:REF`` writes
one) holding each REF, a single-platform image manifest. This writes an OCI image index
naming every REF's manifest with its platform (read from the image's config), stores it as a
blob, and points ``index.json``'s entry TAG at it: ``skopeo copy oci:LAYOUT:TAG ...`` then
serves each consumer the manifest of its platform, as a registry's multi-arch tag does.
Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def _entry(index: dict[str, Any], ref: str) -> dict[str, Any]:
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get(REF_NAME) == ref:
            return dict(m)
    raise SystemExit(f"oci_index: no {ref!r} in the layout's index.json")


def _platform(layout: Path, manifest: dict[str, Any]) -> dict[str, str]:
    body = json.loads(_blob(layout, manifest["digest"]).read_bytes())
    if "config" not in body:
        raise SystemExit(f"oci_index: {manifest['digest']} is not a single-platform image manifest")
    config = json.loads(_blob(layout, body["config"]["digest"]).read_bytes())
    platform = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    return platform


def write_index(layout: Path, tag: str, refs: list[str]) -> str:
    """Point ``tag`` at an image index of ``refs``; return the index's digest."""
    top = json.loads((layout / "index.json").read_text())
    manifests = []
    for ref in refs:
        m = _entry(top, ref)
        m.pop("annotations", None)
        m["platform"] = _platform(layout, m)
        manifests.append(m)
    seen = [(m["platform"]["os"], m["platform"]["architecture"]) for m in manifests]
    if len(set(seen)) != len(seen):
        raise SystemExit(f"oci_index: two images of one platform in {refs}: {seen}")
    data = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}, indent=1
    ).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    entry = {
        "mediaType": INDEX,
        "digest": digest,
        "size": len(data),
        "annotations": {REF_NAME: tag},
    }
    others = [m for m in top["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    top["manifests"] = [*others, entry]
    (layout / "index.json").write_text(json.dumps(top))
    return digest


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    print(write_index(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
