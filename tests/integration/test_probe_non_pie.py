"""Debian's /usr/bin/python3 is a non-PIE executable that takes malloc's address, so
dlsym(RTLD_DEFAULT, "malloc") answers with its PLT stub. The probe must see through it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import JEMALLOC_VERSION, child_env

DEBIAN_PYTHON = "/usr/bin/python3"
SRC = str(Path(__file__).resolve().parents[2] / "src")
CODE = "from allocscope.probe import allocator; a = allocator.detect(); print(a.label, a.warnings)"


def elf_type(path: str) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(18)[16:18], "little")


@pytest.mark.parametrize("name", ["jemalloc", "glibc"])
def test_detection_under_a_non_pie_interpreter(name: str, jemalloc: str) -> None:
    if not Path(DEBIAN_PYTHON).exists():
        pytest.fail(f"{DEBIAN_PYTHON} is missing: scripts/install-system-deps.sh installs it")
    assert elf_type(DEBIAN_PYTHON) in (2, 3)  # ET_EXEC (the case at issue) or ET_DYN
    extra = {"LD_PRELOAD": jemalloc} if name == "jemalloc" else {}
    env = child_env(PYTHONPATH=SRC, **extra)
    out = subprocess.run(
        [DEBIAN_PYTHON, "-c", CODE], env=env, capture_output=True, text=True, check=True
    ).stdout
    expected = f"jemalloc {JEMALLOC_VERSION} (via LD_PRELOAD) ()" if name == "jemalloc" else "glibc"
    assert out.startswith(expected), out
