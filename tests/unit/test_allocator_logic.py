"""Pure logic of allocator detection: names, LD_PRELOAD parsing, ELF checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from allocscope.probe import allocator, elf


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/usr/lib/libjemalloc.so.2", "jemalloc"),
        ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
        ("/opt/custom/libjemalloc_pic.so", "jemalloc"),
        ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10", "tcmalloc"),
        ("/usr/lib/libtcmalloc.so.4", "tcmalloc"),
        ("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0", "mimalloc"),
        ("/lib/x86_64-linux-gnu/libc.so.6", "glibc"),
        ("/lib/x86_64-linux-gnu/libcrypto.so.3", None),
        ("/usr/lib/libz.so.1", None),
    ],
)
def test_allocator_of(path: str, name: str | None) -> None:
    assert allocator.allocator_of(path) == name


def test_preload_accepts_spaces_and_colons() -> None:
    assert allocator.split_preload(" /a.so:/b.so  c.so ") == ["/a.so", "/b.so", "c.so"]
    assert allocator.split_preload(None) == []


def test_examine_preload_explains_each_entry(tmp_path: Path) -> None:
    text = tmp_path / "libjemalloc.so.2"
    text.write_text("not a library")
    mapped = ["/usr/lib/libjemalloc.so.2"]
    entries = allocator.examine_preload(
        f"/nope/libtcmalloc.so.4 {text} libjemalloc.so.2 libmissing.so", mapped
    )
    by_entry = {e.entry: e for e in entries}
    assert by_entry["/nope/libtcmalloc.so.4"].problem == "no such file"
    assert by_entry["/nope/libtcmalloc.so.4"].allocator == "tcmalloc"
    assert by_entry[str(text)].problem == "not an ELF file"
    assert by_entry["libjemalloc.so.2"].loaded  # a bare name matches by basename
    assert by_entry["libjemalloc.so.2"].path == "/usr/lib/libjemalloc.so.2"
    assert by_entry["libmissing.so"].problem == "not found in the library search path"


def test_elf_mismatch_names_the_architecture(tmp_path: Path) -> None:
    # A 64-bit little-endian ELF header for aarch64 (machine 183).
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x03\x00" + (183).to_bytes(2, "little")
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(header + b"\x00" * 64)
    ours = elf.header(sys.executable)
    assert isinstance(ours, tuple)
    if ours[1] == 183:
        pytest.fail("this test assumes a non-aarch64 host; flip the machine number")
    why = elf.mismatch(str(lib))
    assert why is not None and "wrong architecture" in why and "aarch64" in why


def test_elf_of_our_own_interpreter_matches() -> None:
    assert elf.mismatch(sys.executable) is None


def test_label_mentions_preload_only_when_preloaded() -> None:
    base = allocator.detect()
    assert "via LD_PRELOAD" not in base.label
    assert base.label.startswith(base.name)
