"""Which allocator an ELF object is, by the symbols it defines: never by its file name.

One function for every caller: the in-process probe (the object dladdr names), inspect
(the executable and every object mapped into another process) and the bench's variants.
A renamed or symlinked jemalloc is still jemalloc; a tcmalloc named libjemalloc.so.2 is
tcmalloc. The version comes from the object's own bytes (its version string, or the
constant ``mi_version`` returns), so it needs no code run in the process.
"""

from __future__ import annotations

import dataclasses
import errno
import mmap
import os
import re
import struct
from dataclasses import dataclass
from typing import Literal

from allocscope.probe import elf

AllocatorName = Literal["jemalloc", "tcmalloc", "mimalloc", "glibc", "unknown"]

# The symbols that prove each allocator, checked in this order: an executable that links
# jemalloc statically into a static glibc defines both, and jemalloc is the one serving.
MARKERS: dict[AllocatorName, tuple[str, ...]] = {
    "jemalloc": ("mallctl",),
    "tcmalloc": ("tc_version", "MallocExtension_Internal_GetNumericProperty"),
    "mimalloc": ("mi_version",),
    # A static executable has glibc's malloc without gnu_get_libc_version: __libc_malloc
    # names it while the symbol table is there.
    "glibc": ("gnu_get_libc_version", "__libc_malloc"),
}
_ALL_SYMBOLS = ("malloc", *(s for names in MARKERS.values() for s in names))

_VERSION_STRINGS: dict[AllocatorName, re.Pattern[bytes]] = {
    "jemalloc": re.compile(rb"(\d+\.\d+\.\d+)-\d+-g[0-9a-f]{7,40}\0"),
    "tcmalloc": re.compile(rb"gperftools (\d+\.\d+(?:\.\d+)?)\0"),
    "glibc": re.compile(rb"release version (\d+\.\d+(?:\.\d+)?)"),
}

# A stripped static executable has no symbols at all, and no version banner
# (gnu_get_libc_version is linked only when called): glibc's malloc still carries its own
# messages (2.29 and later).
_GLIBC_MALLOC_MESSAGE = re.compile(rb"malloc\(\): corrupted top size\0")

# By file name only to explain an entry that cannot be read (a missing LD_PRELOAD file).
_NAME_HINTS: dict[AllocatorName, re.Pattern[str]] = {
    "jemalloc": re.compile(r"^libjemalloc[._]"),
    "tcmalloc": re.compile(r"^libtcmalloc(_minimal)?[._]"),
    "mimalloc": re.compile(r"^libmimalloc[._-]"),
    "glibc": re.compile(r"^libc[.-]"),
}


@dataclass(frozen=True)
class Identity:
    allocator: AllocatorName | None  # None: not an allocator we know (or not ELF)
    marker: str | None  # the symbol that proved it
    defines_malloc: bool  # the object would serve malloc if it came first in lookup order
    version: str | None
    elf: bool
    soname: str | None = None  # DT_SONAME: the name others' DT_NEEDED use for it
    needed: tuple[str, ...] = ()  # DT_NEEDED, in the loader's order
    machine: str | None = None  # x86_64 or aarch64 (elf.SUPPORTED)


NOT_ELF = Identity(None, None, False, None, False)


def identify_image(data: bytes | mmap.mmap) -> Identity:
    """Identity of an ELF image held in memory (or mapped).

    elf.UnsupportedMachine (an OSError) for an object of a machine we do not read: its
    symbols could still be parsed, but a version decoded from its code could not.
    """
    if data[:4] != b"\x7fELF":
        return NOT_ELF
    machine = elf.check_supported(bytes(data[:20]))
    soname, needed = elf.dynamic_names(data)  # type: ignore[arg-type]
    found = _allocator_identity(data)
    return dataclasses.replace(found, soname=soname, needed=needed, machine=machine)


def _allocator_identity(data: bytes | mmap.mmap) -> Identity:
    symbols = elf.defined_symbols(data, _ALL_SYMBOLS)  # type: ignore[arg-type]
    for name, markers in MARKERS.items():
        marker = next((m for m in markers if m in symbols), None)
        if marker is not None:
            version = _version(name, data, symbols.get(marker))
            return Identity(name, marker, "malloc" in symbols, version, True)
    stripped_static = not symbols and not elf.has_symbol_tables(data)  # type: ignore[arg-type]
    if "malloc" in symbols or stripped_static:  # a stripped executable with an allocator in it
        for name in ("jemalloc", "tcmalloc"):
            version = _version(name, data, None)
            if version is not None:
                return Identity(name, "version string", True, version, True)
    if stripped_static and _GLIBC_MALLOC_MESSAGE.search(data):
        return Identity("glibc", "glibc malloc's messages", True, None, True)
    return Identity(None, None, "malloc" in symbols, None, True)


def identify(path: str) -> Identity:
    """Identity of the ELF file at ``path``; OSError when it cannot be opened or read."""
    if "\0" in path:  # open() raises ValueError for it; to a caller it is just unreadable
        raise OSError(errno.EINVAL, "the path contains a NUL byte", path)
    st = os.stat(path)  # a hit needs no open: an agent meets the same files in every scrape
    hit = _cache.get((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    if hit is not None:
        return hit
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())  # the very file we read
        try:
            return _cached(f.fileno(), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        except elf.UnsupportedMachine as e:
            e.filename = path
            raise


_cache: dict[tuple[int, int, int, int], Identity] = {}


def _cached(fd: int, key: tuple[int, int, int, int]) -> Identity:
    """One read per file version, shared by every process that maps the same file."""
    hit = _cache.get(key)
    if hit is not None:
        return hit
    if key[2] < 64:
        result = NOT_ELF
    else:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
            result = identify_image(data)
    if len(_cache) > 1024:
        _cache.clear()
    _cache[key] = result
    return result


def guess_by_name(path: str) -> AllocatorName | None:
    """What a file's name suggests: only to explain a file that cannot be read."""
    base = os.path.basename(path)
    return next((n for n, p in _NAME_HINTS.items() if p.match(base)), None)


def _version(name: AllocatorName, data: bytes | mmap.mmap, marker_at: int | None) -> str | None:
    if name == "mimalloc":
        return _mimalloc_version(data, marker_at)
    pattern = _VERSION_STRINGS.get(name)
    match = pattern.search(data) if pattern else None
    return match.group(1).decode() if match else None


def _mimalloc_version(data: bytes | mmap.mmap, address: int | None) -> str | None:
    """``mi_version`` returns a constant (209 for 2.0.9): read it from the instruction."""
    if not address:
        return None
    code = elf.bytes_at(data, address, 8)  # type: ignore[arg-type]
    value = None
    if len(code) >= 6 and code[0] == 0xB8 and code[5] == 0xC3:  # x86-64: mov eax, imm32; ret
        value = struct.unpack("<I", code[1:5])[0]
    elif len(code) >= 4:  # aarch64: movz w0, #imm16
        (insn,) = struct.unpack("<I", code[:4])
        if insn & 0xFFE0001F == 0x52800000:
            value = (insn >> 5) & 0xFFFF
    if value is None or not 100 <= value < 10000:
        return None
    return f"{value // 100}.{value % 100 // 10}.{value % 10}"
