"""The linux/arm64 images, run here under emulation (qemu-user-static through binfmt_misc).

``make test`` (and ``make test-arm64``) builds them beside the amd64 ones
(PLATFORMS=linux/amd64,linux/arm64; container/build-image.sh tags them ``<tag>-arm64``) and
runs these tests, which a bare ``pytest`` deselects (marker arm64);
ALLOCSCOPE_TEST_ARM64_IMAGE names another image. Each must behave as
the amd64 image does: the launcher's gate passes, ``GET /`` says aarch64 and jemalloc via
LD_PRELOAD, FIPS is enforced and MD5 refused, ``info``, ``verify`` and the collector give
the amd64 image's answers (but for the machine's name), the examples serve, the SBOM
names the platform and what is in the image, inspect from the host names the emulated
process's allocator, and the OCI image index gives each platform its own image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from allocscope.inspect import inspect_process
from tests.container.conftest import EXAMPLES, build_image
from tests.container.dockerlib import IMAGE, REPO, SLOW, docker, run_once, service
from tests.container.test_image_sbom import check_sbom

pytestmark = [pytest.mark.container, pytest.mark.arm64, SLOW]

ARM64_IMAGE = os.environ.get("ALLOCSCOPE_TEST_ARM64_IMAGE", f"{IMAGE}-arm64")
EMULATED_START_S = 180  # the service's start-up, emulated on two busy cores
MACHINES = re.compile(r"x86_64|aarch64|amd64|arm64")


def arm64_tag(native: str) -> str:
    """The arm64 image of ``native`` (allocscope:latest -> allocscope:latest-arm64), built
    by container/build-image.sh with PLATFORMS=linux/arm64 when it is missing."""
    tag = ARM64_IMAGE if native == IMAGE else f"{native}-arm64"
    if docker("image", "inspect", tag).returncode != 0:
        if tag != f"{native}-arm64":
            pytest.fail(f"{tag} (ALLOCSCOPE_TEST_ARM64_IMAGE) does not exist")
        example = next((e for e, t in EXAMPLES.items() if t == native), None)
        args = ("--app", f"examples/{example}") if example else ()
        build_image(native, *args, platforms="linux/arm64")
    return tag


@pytest.fixture(scope="session")
def arm64_image(image: str) -> str:
    return arm64_tag(image)


def answers(doc: Any) -> Any:
    """What must not differ between platforms: the document with every machine name made
    one word, and what differs by the moment (pid, time, memory, jemalloc's stats, what the
    heap holds) or by the test's choice (the port) left out."""
    if isinstance(doc, dict):
        volatile = {"time", "pid", "memory", "rss_bytes", "stats", "held", "port", "bind_check"}
        return {k: answers(v) for k, v in doc.items() if k not in volatile}
    if isinstance(doc, list):
        return [answers(v) for v in doc]
    return MACHINES.sub("MACHINE", doc) if isinstance(doc, str) else doc


def inside(image: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_once("--entrypoint", "/usr/bin/python", image, *args, timeout=300)


def test_arm64_image_is_an_arm64_image(arm64_image: str) -> None:
    doc = json.loads(docker("image", "inspect", arm64_image, check=True).stdout)[0]
    assert (doc["Os"], doc["Architecture"]) == ("linux", "arm64")
    proc = inside(arm64_image, "-c", "import platform; print(platform.machine())")
    assert (proc.returncode, proc.stdout.strip()) == (0, "aarch64"), proc.stderr


def test_serves_aarch64_with_jemalloc_and_fips_enforced(image: str, arm64_image: str) -> None:
    """GET /, /metrics and the launcher's line, on each platform: the same but for the machine."""
    seen = {}
    for tag in (image, arm64_image):
        with service(tag) as c:
            c.wait_serving(EMULATED_START_S)
            root = c.get("/")
            assert root.status == 200, root.body
            launch = next(
                json.loads(line)
                for line in c.logs().splitlines()
                if line.startswith("{") and '"event":"launch"' in line
            )
            metrics = c.get("/metrics")
            assert metrics.status == 200
            families = {
                f.name: sorted(
                    (s.name, tuple(sorted(kv for kv in s.labels.items() if kv[0] != "pid")))
                    for s in f.samples
                )
                for f in text_string_to_metric_families(metrics.body.decode())
                if f.name.startswith("allocscope_")
            }
            seen[tag] = root.json(), launch, families
    info, launch, families = seen[arm64_image]
    assert "aarch64" in info["python_platform"]
    assert info["allocator_name"] == "jemalloc" and "via LD_PRELOAD" in info["allocator"]
    assert re.fullmatch(r"5\.\d+\.\d+", info["allocator_version"])
    assert info["fips"]["state"] == "enforced"
    assert all(launch["checks"].values()) and launch["checks"]  # the gate passed
    native_info, native_launch, native_families = seen[image]
    assert answers(info) == answers(native_info)
    assert answers(launch) == answers(native_launch)
    assert set(families) == set(native_families)
    for name in ("allocscope_allocator_info", "allocscope_fips_state"):
        assert answers(families[name]) == answers(native_families[name])


MD5 = """
import _hashlib, hashlib, platform
refused = []
for make in (lambda: hashlib.md5(b"x"), lambda: hashlib.new("md5", b"x")):
    try:
        make()
    except ValueError:
        refused.append(True)
print(platform.machine(), _hashlib.get_fips_mode(), len(refused), hashlib.sha256(b"x").hexdigest())
"""


def test_md5_is_refused_under_fips_on_arm64(arm64_image: str) -> None:
    proc = inside(arm64_image, "-c", MD5)
    assert proc.returncode == 0, proc.stderr
    sha256_x = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert proc.stdout.split() == ["aarch64", "1", "2", sha256_x]


def test_info_and_verify_answer_as_on_amd64(image: str, arm64_image: str) -> None:
    info = {t: inside(t, "-m", "allocscope", "info") for t in (image, arm64_image)}
    verify = {t: inside(t, "-m", "allocscope", "verify") for t in (image, arm64_image)}
    for proc in (*info.values(), *verify.values()):
        assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = {t: json.loads(p.stdout) for t, p in info.items()}
    assert docs[arm64_image]["runtime"]["machine"] == "aarch64"
    assert docs[arm64_image]["allocator"]["name"] == "jemalloc"
    # The one real difference: Debian builds arm64's jemalloc without heap profiling, so
    # opt.prof does not exist there (not reported), where amd64's says false.
    prof = {t: d["jemalloc"]["options"].pop("prof", None) for t, d in docs.items()}
    assert (prof[image], prof[arm64_image]) == (False, None)
    assert answers(docs[arm64_image]) == answers(docs[image])
    assert answers(verify[arm64_image].stdout) == answers(verify[image].stdout)
    assert verify[arm64_image].stdout.count("\nok ") + 1 >= 5  # every check, each "ok"


def test_arm64_sbom_names_its_platform_and_what_is_in_it(arm64_image: str) -> None:
    sbom = check_sbom(arm64_image, REPO / "container" / "requirements.lock")
    props = {p["name"]: p["value"] for p in sbom["metadata"]["component"]["properties"]}
    assert props["allocscope:platform"] == "linux/arm64"
    debs = [c["purl"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert debs and all("arch=arm64" in p or "arch=all" in p for p in debs)
    wheels = [
        p["value"]
        for c in sbom["components"]
        for p in c.get("properties", [])
        if p["name"] == "allocscope:wheel"
    ]
    binary = [w for w in wheels if not w.endswith("-none-any.whl")]
    assert binary and all("aarch64" in w for w in binary), binary


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_arm64_examples_serve(example: str) -> None:
    tag = arm64_tag(EXAMPLES[example])
    doc = json.loads(docker("image", "inspect", tag, check=True).stdout)[0]
    assert doc["Architecture"] == "arm64"
    with service(tag) as c:
        c.wait_serving(EMULATED_START_S)
        mounted = c.get("/allocscope/").json()  # allocscope's app, mounted in the example
        assert mounted["allocator_name"] == "jemalloc" and "LD_PRELOAD" in mounted["allocator"]
        assert mounted["fips"]["state"] == "enforced" and not mounted["warnings"]
        assert c.get("/").status == 200


def test_inspect_names_the_allocator_of_the_emulated_service(arm64_image: str) -> None:
    """From the host, as for any process: the program qemu runs, not qemu."""
    with service(arm64_image) as c:
        c.wait_serving(EMULATED_START_S)
        pid = c.inspect()["State"]["Pid"]
        report = inspect_process(pid)
        a = report.allocator
        assert a is not None and (a.name, a.source) == ("jemalloc", "LD_PRELOAD")
        assert (
            a.path == "/usr/lib/libjemalloc.so.2"
            and a.version == c.get("/").json()["allocator_version"]
        )
        assert a.emulated is not None and a.emulated.startswith("aarch64 under qemu-user")
        assert report.exe is not None and "qemu-aarch64" in report.exe
        assert a.conflict is None


def test_oci_index_gives_each_platform_its_image(image: str, arm64_image: str) -> None:
    """container/oci/<name>: one reference; skopeo picks each platform's image from it, and
    what it loads back into the engine is the image that was built: the same platform, the
    same layers (diff ids) and the same labels."""
    layout = REPO / "container" / "oci" / image.rsplit(":", 1)[0].replace("/", "_")
    ref = f"oci:{layout}:{image.rsplit(':', 1)[1]}"
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: scripts/install-system-deps.sh installs it"
    raw = subprocess.run([skopeo, "inspect", "--raw", ref], capture_output=True, text=True)
    assert raw.returncode == 0, f"no OCI index at {ref}: {raw.stderr}"
    index = json.loads(raw.stdout)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    }
    assert platforms == {"linux/amd64", "linux/arm64"}
    for arch, built in (("arm64", arm64_image), ("amd64", image)):
        loaded = f"allocscope-test-oci-{uuid.uuid4().hex[:12]}:{arch}"
        try:
            copy = subprocess.run(
                [skopeo, "copy", "-q", "--override-arch", arch, ref, f"docker-daemon:{loaded}"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert copy.returncode == 0, copy.stderr
            got, want = (
                json.loads(docker("image", "inspect", t, check=True).stdout)[0]
                for t in (loaded, built)
            )
            assert got["Architecture"] == want["Architecture"] == arch
            assert got["RootFS"]["Layers"] == want["RootFS"]["Layers"]
            assert got["Config"]["Labels"] == want["Config"]["Labels"]
        finally:
            docker("rmi", loaded)
