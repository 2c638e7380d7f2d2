"""Each image carries a CycloneDX SBOM (/app/sbom.cdx.json, labelled with its sha256) that
lists what is really in it: every vendored Python distribution with its version (and the
SHA-256 of a wheel its lock allows), every system package of the runtime, jemalloc."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.container.dockerlib import REPO, SLOW, docker, run_once

pytestmark = [pytest.mark.container, SLOW]

# Asked of the image itself: its vendored distributions, its dpkg records, the SBOM's bytes,
# the jemalloc it preloads.
INSIDE = r"""
import ctypes, hashlib, json, os, sys
from importlib import metadata
vendor = "/app/vendor/" + sys.implementation.cache_tag
dists = {d.metadata["Name"].lower().replace("_", "-"): d.version
         for d in metadata.distributions(path=[vendor])}
debs = {}
status = "/var/lib/dpkg/status.d"
for f in (os.listdir(status) if os.path.isdir(status) else []):
    fields = dict(l.split(": ", 1) for l in open(os.path.join(status, f)) if ": " in l)
    debs[fields["Package"].strip()] = fields["Version"].strip()
v = ctypes.c_char_p(); n = ctypes.c_size_t(ctypes.sizeof(v))
je = ctypes.CDLL("/usr/lib/libjemalloc.so.2")
je.mallctl(b"version", ctypes.byref(v), ctypes.byref(n), None, 0)
sbom = open("/app/sbom.cdx.json", "rb").read()
print(json.dumps({"dists": dists, "debs": debs, "jemalloc": v.value.decode(),
                  "sbom": sbom.decode(), "sha256": hashlib.sha256(sbom).hexdigest()}))
"""


def lock_hashes(path: Path) -> dict[str, set[str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name = line.split("==")[0].strip().lower()
            found[name] = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return found


def check_sbom(image: str, lock: Path) -> dict[str, Any]:
    config = json.loads(docker("image", "inspect", image, check=True).stdout)[0]["Config"]
    labels = config["Labels"]
    proc = run_once("--entrypoint", "/usr/bin/python", image, "-c", INSIDE)
    assert proc.returncode == 0, proc.stderr
    inside = json.loads(proc.stdout)
    assert labels["allocscope.sbom"] == "/app/sbom.cdx.json"
    assert labels["allocscope.sbom.sha256"] == inside["sha256"]
    sbom = json.loads(inside["sbom"])
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["name"] == image.rsplit(":", 1)[0]

    comps = sbom["components"]
    pypi = {c["name"].lower(): c for c in comps if c.get("purl", "").startswith("pkg:pypi/")}
    # Exactly the distributions vendored in the image, at the same versions.
    assert {n: c["version"] for n, c in pypi.items()} == inside["dists"]
    allowed = lock_hashes(lock)
    for name, c in pypi.items():
        [digest] = [h["content"] for h in c["hashes"] if h["alg"] == "SHA-256"]
        if name != "allocscope":  # allocscope's wheel is built from the checkout
            assert digest in allowed[name], name
    debs = {c["name"]: c["version"] for c in comps if c.get("purl", "").startswith("pkg:deb/")}
    assert debs == inside["debs"]
    [jemalloc] = [c for c in comps if c["name"] == "jemalloc"]
    assert jemalloc["version"] == inside["jemalloc"]
    return sbom


def test_demo_sbom_lists_what_is_in_the_image(image: str) -> None:
    sbom = check_sbom(image, REPO / "container" / "requirements.lock")
    names = {c["name"] for c in sbom["components"]}
    assert {"granian", "prometheus-client", "psutil", "allocscope", "libssl3t64"} <= names or {
        "granian", "prometheus-client", "psutil", "allocscope", "libssl3",
    } <= names  # fmt: skip


def test_example_sbom_lists_what_is_in_the_image(example_image: tuple[str, str]) -> None:
    example, image = example_image
    sbom = check_sbom(image, REPO / "examples" / example / "requirements.lock")
    server = {"flask-gunicorn": "gunicorn", "fastapi-uvicorn": "uvicorn"}[example]
    assert server in {c["name"] for c in sbom["components"]}


def test_sbom_is_kept_beside_the_image(example_image: tuple[str, str]) -> None:
    """container/build-image.sh keeps a copy in container/sboms/, identical to the image's."""
    _, image = example_image
    name = image.replace("/", "_").replace(":", "_") + ".cdx.json"
    beside = REPO / "container" / "sboms" / name
    if not beside.is_file():
        pytest.fail(f"{beside} is missing: build the image with container/build-image.sh")
    config = json.loads(docker("image", "inspect", image, check=True).stdout)[0]["Config"]
    assert (
        hashlib.sha256(beside.read_bytes()).hexdigest()
        == config["Labels"]["allocscope.sbom.sha256"]
    )
