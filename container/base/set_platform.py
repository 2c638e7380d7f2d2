"""Give an image saved by ``docker save`` the platform its files are built for.

Usage: python set_platform.py ARCHIVE ARCH > NEW_ARCHIVE   (then ``docker load``)

``docker import --platform`` is ignored by an engine without experimental features (Debian's
docker.io 20.10): an arm64 root filesystem imported there is labelled amd64, and images
built on it would be too. This rewrites the image configuration's ``architecture`` (Go's
name: amd64, arm64) and the config's file name, which is its SHA-256, in the archive's
manifest. The layers pass through unchanged. Standard library only.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile


def set_platform(archive: str, arch: str, out: io.BufferedWriter) -> str:
    """Write ``archive`` with every image's architecture set to ``arch``; return the new id."""
    with tarfile.open(archive) as src:
        manifest = json.load(src.extractfile("manifest.json") or io.BytesIO(b"[]"))
        if len(manifest) != 1:
            raise SystemExit(
                f"set_platform: expected one image in {archive}, found {len(manifest)}"
            )
        old = manifest[0]["Config"]
        config = json.load(src.extractfile(old) or io.BytesIO(b"{}"))
        config["architecture"] = arch
        config.pop("variant", None)
        data = json.dumps(config, separators=(",", ":")).encode()
        digest = hashlib.sha256(data).hexdigest()
        manifest[0]["Config"] = f"{digest}.json"
        replaced = {old: data, "manifest.json": json.dumps(manifest).encode()}
        with tarfile.open(fileobj=out, mode="w|") as dst:
            for member in src:
                name = f"{digest}.json" if member.name == old else member.name
                if member.name in replaced:
                    blob = replaced[member.name]
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(blob), member.mtime, member.mode
                    dst.addfile(info, io.BytesIO(blob))
                elif member.name != "repositories":
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return digest


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        raise SystemExit(__doc__)
    archive, arch = argv[1:]
    if arch not in ("amd64", "arm64"):
        raise SystemExit(f"set_platform: unsupported architecture {arch!r} (amd64, arm64)")
    print(set_platform(archive, arch, sys.stdout.buffer), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
