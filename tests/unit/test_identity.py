"""Identity by symbols, on the real allocator libraries (renamed copies included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from allocscope.probe import identity
from tests.conftest import JEMALLOC_VERSION, MIMALLOC_VERSION, TCMALLOC_VERSION

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


@pytest.mark.parametrize(
    ("fixture", "name", "marker", "version"),
    [
        ("jemalloc", "jemalloc", "mallctl", JEMALLOC_VERSION),
        ("tcmalloc", "tcmalloc", "tc_version", TCMALLOC_VERSION),
        ("mimalloc", "mimalloc", "mi_version", MIMALLOC_VERSION),
    ],
)
def test_each_allocator_by_its_symbols_even_renamed(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fixture: str,
    name: str,
    marker: str,
    version: str,
) -> None:
    original = request.getfixturevalue(fixture)
    renamed = tmp_path / "libsomething.so"
    shutil.copy(original, renamed)
    for path in (original, str(renamed)):
        found = identity.identify(path)
        assert (found.allocator, found.marker, found.defines_malloc) == (name, marker, True)
        assert found.version == version  # Debian bookworm's packages


def test_tcmalloc_named_like_jemalloc_is_tcmalloc(tmp_path: Path, tcmalloc: str) -> None:
    liar = tmp_path / "libjemalloc.so.2"
    shutil.copy(tcmalloc, liar)
    assert identity.identify(str(liar)).allocator == "tcmalloc"


def test_glibc_and_non_allocators() -> None:
    libc = identity.identify(LIBC)
    assert libc.allocator == "glibc" and libc.version and libc.version.startswith("2.")
    crypto = identity.identify("/lib/x86_64-linux-gnu/libcrypto.so.3")
    assert (crypto.allocator, crypto.defines_malloc, crypto.elf) == (None, False, True)


def test_not_elf_and_missing(tmp_path: Path) -> None:
    text = tmp_path / "libjemalloc.so.2"
    text.write_text("#!/bin/sh\n" * 20)
    assert identity.identify(str(text)) == identity.NOT_ELF
    with pytest.raises(OSError):
        identity.identify(str(tmp_path / "missing.so"))
    assert identity.guess_by_name("/nope/libtcmalloc_minimal.so.4") == "tcmalloc"
