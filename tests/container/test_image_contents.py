"""What the runtime image holds and how it is configured: no shell, no pip, nonroot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.container.dockerlib import DEMO_MALLOC_CONF, SLOW, run_once

pytestmark = [pytest.mark.container, SLOW]

# Exact base names: a shell, a package manager, pip (pip3, pip3.13), a downloader.
FORBIDDEN = re.compile(
    r"(^|/)(sh|bash|dash|ash|zsh|busybox|toybox|apt|apt-get|apt-cache|dpkg|dpkg-deb|rpm|"
    r"apk|yum|dnf|microdnf|pip|pip3|pip3\.\d+|curl|wget)$"
)


def test_runs_as_nonroot(image: str, image_config: dict[str, Any]) -> None:
    assert image_config["User"] == "65532:65532"
    proc = run_once(
        "--entrypoint", "/usr/bin/python", image, "-c", "import os; print(os.getuid(), os.getgid())"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["65532", "65532"]


def test_no_shell_pip_or_package_manager(image_files: dict[str, str], python_xy: str) -> None:
    # Files and links only: /var/lib/dpkg/status.d stays on purpose (package metadata for
    # image scanners; there is no dpkg).
    found = sorted(p for p, kind in image_files.items() if kind != "d" and FORBIDDEN.search(p))
    assert found == [], f"the runtime image holds {found}"
    assert not [
        p
        for p in image_files
        if p.startswith("var/lib/dpkg/") and not p.startswith("var/lib/dpkg/status.d")
    ]
    # Nor pip as a module anywhere (python -m pip).
    assert not [p for p in image_files if re.search(r"(^|/)pip/__init__\.py$", p)]
    # The only executables are the interpreter and ldconfig (kept for ctypes.util).
    bins = sorted(p for p in image_files if re.match(r"(usr/)?s?bin/[^/]+$", p))
    assert {Path(p).name for p in bins} <= {"python", "python3", f"python{python_xy}", "ldconfig"}


def test_no_shell_to_exec(image: str) -> None:
    proc = run_once("--entrypoint", "/bin/sh", image, "-c", "true", timeout=60)
    assert proc.returncode != 0
    assert "no such file" in proc.stderr.lower()


def test_jemalloc_and_app_files(image_files: dict[str, str], python_tag: str) -> None:
    # A real file (not a link into the builder's layout) at Wolfi's path.
    assert image_files.get("usr/lib/libjemalloc.so.2") == "-"
    for path in ("app/launch.py", "app/bench_alloc.py"):
        assert image_files.get(path) == "-", path
    vendors = sorted(p for p in image_files if re.fullmatch(r"app/vendor/[^/]+", p))
    assert vendors == [f"app/vendor/{python_tag}"]
    for pkg in ("allocscope", "granian", "prometheus_client", "psutil", "click"):
        assert image_files.get(f"app/vendor/{python_tag}/{pkg}/__init__.py") == "-", pkg
    # Console scripts would name a python that only works with PYTHONPATH set: left out.
    assert not [p for p in image_files if p.startswith(f"app/vendor/{python_tag}/bin")]
    # Byte code compiled in the builder: nothing to write at run time (read-only root).
    assert any(p.endswith(f".{python_tag}.pyc") and "/allocscope/" in p for p in image_files)


def test_app_is_not_writable_by_the_service(image: str) -> None:
    code = (
        "import os; print(os.access('/app', os.W_OK), os.access('/app/vendor', os.W_OK),"
        " os.stat('/app/launch.py').st_uid)"
    )
    proc = run_once("--entrypoint", "/usr/bin/python", image, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "0"]


def test_image_config(image_config: dict[str, Any], python_tag: str) -> None:
    env = dict(e.split("=", 1) for e in image_config["Env"])
    assert env["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2"
    assert env["MALLOC_CONF"] == DEMO_MALLOC_CONF
    assert env["PYTHONPATH"] == f"/app/vendor/{python_tag}"
    assert env["ALLOCSCOPE_EXPECT_ALLOCATOR"] == "jemalloc"
    assert env["ALLOCSCOPE_EXPECT_FIPS"] == "enforced"
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "8080"
    assert image_config["Entrypoint"] == ["/usr/bin/python", "/app/launch.py"]
    assert not image_config.get("Cmd")
    assert list(image_config["ExposedPorts"]) == ["8080/tcp"]
    # Exec form: no shell runs the health check.
    assert image_config["Healthcheck"]["Test"] == [
        "CMD", "/usr/bin/python", "-m", "allocscope", "verify", "-q",
    ]  # fmt: skip
    labels = image_config["Labels"]
    assert labels["org.opencontainers.image.title"] == "allocscope"
    for key in ("version", "revision", "created", "licenses", "base.name", "description"):
        value = labels.get(f"org.opencontainers.image.{key}")
        assert value and value != "unknown", key
    assert labels["org.opencontainers.image.source"]  # the git remote, or why there is none
    assert labels["allocscope.sbom"] == "/app/sbom.cdx.json"


def test_builder_and_runtime_share_the_abi(image: str) -> None:
    code = "import sys, granian, psutil; print(sys.implementation.cache_tag, granian.__file__)"
    proc = run_once("--entrypoint", "/usr/bin/python", image, "-c", code)
    assert proc.returncode == 0, proc.stderr
    tag, where = proc.stdout.split()
    assert where.startswith(f"/app/vendor/{tag}/")


def test_abi_mismatch_is_reported_by_the_launcher(
    image: str, shared_dir: Path, python_tag: str
) -> None:
    """Vendored extensions for another ABI: exit 113 and a message that names it."""
    other = shared_dir / "cpython-312" / "granian"
    other.mkdir(parents=True)
    (other / "_granian.cpython-312-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    for d in (shared_dir, shared_dir / "cpython-312", other):
        d.chmod(0o755)
    proc = run_once("-v", f"{shared_dir}:/vendor:ro", "-e", "ALLOCSCOPE_VENDOR_ROOT=/vendor", image)
    assert proc.returncode == 113, proc.stderr
    assert '"error":"abi_mismatch"' in proc.stderr
    assert python_tag in proc.stderr and "cpython-312" in proc.stderr
