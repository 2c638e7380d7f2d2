"""The built wheel, installed alone (no extras, no index) in a clean venv: the core works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import child_env

REPO = Path(__file__).resolve().parents[2]


def run(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=child_env(PIP_CONSTRAINT="", PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",  # not the checkout: the venv must not import allocscope from src/
    )


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                "-w", tmp / "dist", REPO)  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp / "dist").glob("allocscope-*.whl")
    venv = tmp / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    installed = run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
                    "-q", "--no-index", "--no-deps", wheel)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_wheel_declares_no_dependency_outside_its_extras(core_venv: Path) -> None:
    code = (
        "import json; from importlib import metadata; d = metadata.distribution('allocscope'); "
        "print(json.dumps({'dists': sorted(x.metadata['Name'] for x in metadata.distributions()),"
        " 'requires': d.requires or []}))"
    )
    out = run(core_venv / "bin" / "python", "-c", code)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["dists"] == ["allocscope"]
    assert all("extra ==" in r for r in doc["requires"]), doc["requires"]


def test_info_verify_and_the_library_work_with_the_core_alone(core_venv: Path) -> None:
    info = run(core_venv / "bin" / "allocscope", "info")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["allocator"]["name"] == "glibc"
    verify = run(core_venv / "bin" / "allocscope", "verify", "--allocator", "glibc")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    code = (
        "import allocscope; from allocscope import forksafe, web; s = allocscope.snapshot(); "
        "print(s.allocator.name, allocscope.verify().passed, forksafe.after_fork().action)"
    )
    lib = run(core_venv / "bin" / "python", "-c", code)
    assert lib.returncode == 0, lib.stderr
    assert lib.stdout.split() == ["glibc", "True", "not_jemalloc"]


def test_a_command_that_needs_an_extra_names_it(core_venv: Path) -> None:
    bench = run(core_venv / "bin" / "allocscope", "bench", "--variant", "glibc")
    assert bench.returncode == 5, bench.stderr
    assert bench.stderr.splitlines() == [
        "allocscope bench: needs psutil, which is not installed: pip install 'allocscope[bench]'"
    ]
