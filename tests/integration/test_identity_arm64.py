"""Identity of arm64 objects, read on this machine: Debian's arm64 packages and programs
cross-compiled against them (no emulation: only their files are read); then those programs
running under qemu-user, inspected from outside as any process.

The packages come from the host's own suite for arm64 (scripts/fetch-debs.sh, cached), so
each arm64 library must be named with the version its x86-64 twin on this host has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from allocscope.inspect import inspect_process
from allocscope.probe import elf, identity
from tests.conftest import allocator_path
from tests.integration.targets import running

ROOT = Path(__file__).resolve().parents[2]
ARM64_PACKAGES = (
    "libjemalloc2",
    "libjemalloc-dev",
    "libtcmalloc-minimal4",
    "libmimalloc2.0",
    "libc6",
)
LIB = "usr/lib/aarch64-linux-gnu"
HOST_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def _unpack(tmp: Path, arch: str, *packages: str) -> Path:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "fetch-debs.sh"), arch, *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/fetch-debs.sh {arch} failed:\n{proc.stderr}"
    debs = Path(proc.stdout.strip().splitlines()[-1])
    root = tmp / arch
    for p in packages:
        (deb,) = debs.glob(f"{p}_*_{arch}.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def arm64_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _unpack(tmp_path_factory.mktemp("debs"), "arm64", *ARM64_PACKAGES)


@pytest.mark.parametrize(
    ("name", "library", "marker", "twin"),
    [
        ("jemalloc", f"{LIB}/libjemalloc.so.2", "mallctl", "jemalloc"),
        ("tcmalloc", f"{LIB}/libtcmalloc_minimal.so.4", "tc_version", "tcmalloc"),
        ("mimalloc", f"{LIB}/libmimalloc.so.2.0", "mi_version", "mimalloc"),
        ("glibc", "lib/aarch64-linux-gnu/libc.so.6", "gnu_get_libc_version", None),
    ],
)
def test_debians_arm64_allocators_are_named_as_their_x86_64_twins(
    arm64_root: Path, tmp_path: Path, name: str, library: str, marker: str, twin: str | None
) -> None:
    arm64 = arm64_root / library
    host = identity.identify(allocator_path(twin) if twin else HOST_LIBC)
    renamed = tmp_path / "libsomething.so"
    shutil.copy(arm64, renamed)
    for path in (arm64, renamed):
        found = identity.identify(str(path))
        assert (found.allocator, found.marker, found.defines_malloc) == (name, marker, True)
        assert found.machine == "aarch64" and host.machine == "x86_64"
        assert found.version is not None and found.version == host.version
        assert "ld-linux-aarch64.so.1" in found.needed or found.soname == "ld-linux-aarch64.so.1"


def _cross_compile(tmp: Path, name: str, *args: str) -> tuple[Path, Path]:
    source = tmp / "main.c"
    source.write_text(
        "#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n"
        "int main(void) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); pause();"
        " return p[0]; }\n"
    )
    binary, stripped = tmp / name, tmp / f"{name}-stripped"
    subprocess.run(
        ["aarch64-linux-gnu-gcc", "-O1", "-o", str(binary), str(source), *args], check=True
    )
    subprocess.run(["aarch64-linux-gnu-strip", "-o", str(stripped), str(binary)], check=True)
    return binary, stripped


def test_arm64_program_with_jemalloc_linked_statically(arm64_root: Path, tmp_path: Path) -> None:
    binary, stripped = _cross_compile(
        tmp_path, "static-jemalloc", str(arm64_root / LIB / "libjemalloc.a"), "-lpthread", "-lm"
    )
    version = identity.identify(allocator_path("jemalloc")).version
    for exe, marker in ((binary, "mallctl"), (stripped, "version string")):
        found = identity.identify(str(exe))
        assert (found.allocator, found.marker, found.version) == ("jemalloc", marker, version)
        assert found.machine == "aarch64" and found.defines_malloc


def test_arm64_program_with_glibc_linked_statically(tmp_path: Path) -> None:
    binary, stripped = _cross_compile(tmp_path, "static-glibc", "-static")
    for exe, marker in ((binary, "__libc_malloc"), (stripped, "glibc malloc's messages")):
        found = identity.identify(str(exe))
        assert (found.allocator, found.marker, found.machine) == ("glibc", marker, "aarch64")
        assert found.needed == () and found.defines_malloc


def test_another_machines_object_is_refused_by_name(tmp_path: Path) -> None:
    """32-bit ARM (Debian's armhf jemalloc): refused, saying which machine it is built for."""
    root = _unpack(tmp_path, "armhf", "libjemalloc2")
    armhf = root / "usr/lib/arm-linux-gnueabihf/libjemalloc.so.2"
    with pytest.raises(elf.UnsupportedMachine) as refused:
        identity.identify(str(armhf))
    assert refused.value.filename == str(armhf)
    assert "32-bit arm object" in str(refused.value) and "x86_64 and aarch64" in str(refused.value)
    assert isinstance(refused.value, OSError)  # every caller already reports an OSError
    assert os.path.getsize(armhf) > 64


@pytest.fixture(scope="module")
def emulation() -> None:
    """arm64 programs run here (scripts/lib.sh ensure_emulation: qemu-user-static, binfmt_misc)."""
    script = f". {ROOT / 'scripts' / 'lib.sh'} && ensure_emulation arm64"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"arm64 emulation is not available:\n{proc.stderr}"


def _mapped(pid: int, path: Path) -> bool:
    with open(f"/proc/{pid}/maps", encoding="utf-8") as f:
        return str(path) in f.read()


@pytest.mark.parametrize("stripped", [False, True])
def test_inspect_names_the_allocator_of_an_emulated_arm64_process(
    arm64_root: Path, tmp_path: Path, emulation: None, stripped: bool
) -> None:
    """/proc/PID/exe is qemu (a static x86-64 glibc program): the answer is the program's."""
    jemalloc = _cross_compile(
        tmp_path, "static-jemalloc", "-static", str(arm64_root / LIB / "libjemalloc.a"), "-lm"
    )[stripped]
    glibc = _cross_compile(tmp_path, "static-glibc", "-static")[stripped]
    version = identity.identify(allocator_path("jemalloc")).version
    expected = {jemalloc: ("jemalloc", version), glibc: ("glibc", None)}
    for exe, (name, version) in expected.items():
        with running([str(exe)], ready=lambda p, exe=exe: _mapped(p.pid, exe)) as proc:
            report = inspect_process(proc.pid)
            assert report.exe is not None and "qemu-aarch64" in report.exe
            a = report.allocator
            assert a is not None
            assert (a.name, a.source, a.path, a.version) == (name, "static", str(exe), version)
            assert a.emulated is not None and a.emulated.startswith("aarch64 under qemu-user")
            assert a.conflict is None and not a.warnings
            assert report.memory.glibc is None  # qemu's [heap] is not the program's
