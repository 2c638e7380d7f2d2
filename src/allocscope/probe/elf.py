"""Just enough ELF: why the loader would refuse a file, and which symbols an object defines."""

from __future__ import annotations

import errno
import os
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass

_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv", 21: "ppc64"}


def describe_machine(code: int) -> str:
    return _MACHINES.get(code, f"machine {code}")


# The machines whose objects the identity reads: their symbol tables are parsed the same way,
# but a version read from code bytes (mimalloc's mi_version) is decoded per instruction set.
SUPPORTED = {(64, 62): "x86_64", (64, 183): "aarch64"}


class UnsupportedMachine(OSError):
    """An ELF object built for a machine whose objects allocscope does not read."""

    def __init__(self, bits: int, machine: int, path: str | None = None) -> None:
        what = f"{bits}-bit {describe_machine(machine)}"
        supported = " and ".join(SUPPORTED.values())
        super().__init__(
            errno.ENOEXEC,
            f"a {what} object: allocscope reads 64-bit {supported} objects only",
            path,
        )


def machine_of(head: bytes) -> tuple[int, int] | None:
    """(ELF class bits, e_machine) from an ELF image's first 20 bytes, or None if not ELF."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "<" if head[5] == 1 else ">"
    return {1: 32, 2: 64}.get(head[4], 0), struct.unpack(order + "H", head[18:20])[0]


def check_supported(head: bytes, path: str | None = None) -> str:
    """The machine's name when objects of it can be read; UnsupportedMachine otherwise."""
    found = machine_of(head)
    if found is None:
        raise OSError(errno.ENOEXEC, "not an ELF file", path)
    name = SUPPORTED.get(found)
    if name is None:
        raise UnsupportedMachine(*found, path)
    return name


def header(path: str) -> tuple[int, int] | str:
    """(ELF class bits, machine) of ``path``, or a sentence saying why it is not usable."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory"
    except PermissionError:
        return "permission denied"
    except OSError as e:
        return e.strerror or str(e)
    except ValueError:  # a NUL byte in the name
        return "not a valid file name"
    found = machine_of(head)
    return "not an ELF file" if found is None else found


def mismatch(path: str) -> str | None:
    """Why ``path`` cannot load into this interpreter, or None if it could."""
    theirs = header(path)
    if isinstance(theirs, str):
        return theirs
    ours = header(sys.executable)
    if isinstance(ours, str):
        return None  # cannot compare; let the mappings speak
    if theirs != ours:
        return (
            f"wrong architecture: {theirs[0]}-bit {describe_machine(theirs[1])}, "
            f"this process is {ours[0]}-bit {describe_machine(ours[1])}"
        )
    return None


# --- symbol tables -----------------------------------------------------------------------
# Enough of the ELF format to answer "does this object define these symbols, and where?"
# from the section headers: .dynsym (what the loader sees) and .symtab (what a static link
# left behind, when not stripped). Names are located in the string table first, so a large
# table (node's .dynsym) is scanned with one struct.iter_unpack and an integer set lookup.

_SHT_SYMTAB, _SHT_DYNSYM = 2, 11
_SHN_UNDEF = 0
_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE = 1, 2, 10


@dataclass(frozen=True)
class _Section:
    kind: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


def _sections(data: bytes) -> tuple[str, list[_Section]] | None:
    """Byte-order prefix and section headers, or None when ``data`` is not ELF."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2):
        return None
    order = "<" if data[5] == 1 else ">"
    is64 = data[4] == 2
    if is64:
        shoff, shentsize, shnum = (
            struct.unpack_from(order + "Q", data, 0x28)[0],
            *struct.unpack_from(order + "HH", data, 0x3A),
        )
        fmt = order + "IIQQQQIIQQ"
    else:
        shoff, shentsize, shnum = (
            struct.unpack_from(order + "I", data, 0x20)[0],
            *struct.unpack_from(order + "HH", data, 0x2E),
        )
        fmt = order + "IIIIIIIIII"
    sections = []
    for i in range(shnum):
        at = shoff + i * shentsize
        if at + struct.calcsize(fmt) > len(data):
            return None
        _, kind, _, addr, offset, size, link, _, _, entsize = struct.unpack_from(fmt, data, at)
        sections.append(_Section(kind, addr, offset, size, link, entsize))
    return order + ("64" if is64 else "32"), sections


def defined_symbols(data: bytes, names: Iterable[str]) -> dict[str, int]:
    """Which of ``names`` the ELF image ``data`` defines (global or weak), with their values.

    The dynamic table is what the loader binds against; the static ``.symtab`` is read only
    when there is no dynamic table (a static executable) or the dynamic one defines
    ``malloc`` without saying whose (an allocator linked into an executable).
    """
    parsed = _sections(data)
    if parsed is None:
        return {}
    layout, sections = parsed
    wanted = [n.encode() for n in names]
    found: dict[str, int] = {}
    dynamic = [s for s in sections if s.kind == _SHT_DYNSYM]
    for table in dynamic:
        _scan(data, layout, sections, table, wanted, found)
    if not dynamic or ("malloc" in found and len(found) == 1):
        for table in (s for s in sections if s.kind == _SHT_SYMTAB):
            _scan(data, layout, sections, table, wanted, found)
    return found


def _scan(
    data: bytes,
    layout: str,
    sections: list[_Section],
    table: _Section,
    wanted: list[bytes],
    found: dict[str, int],
) -> None:
    if table.link >= len(sections):
        return
    strtab = sections[table.link]
    first, last = strtab.offset, strtab.offset + strtab.size
    order, is64 = layout[0], layout.endswith("64")
    # st_name, st_info, st_other, st_shndx, st_value, st_size (field order differs by class)
    entry = order + ("IBBHQQ" if is64 else "IIIBBH")
    size = struct.calcsize(entry)
    for name in wanted:
        at = data.find(name + b"\0", first, last)
        while at >= 0:  # tail-merged tables may hold "malloc" inside "je_malloc"
            _match(data, table, entry, size, at - first, name.decode(), found)
            at = data.find(name + b"\0", at + 1, last)


def _match(
    data: bytes,
    table: _Section,
    entry: str,
    size: int,
    st_name: int,
    name: str,
    found: dict[str, int],
) -> None:
    """Find the symbol entries whose st_name is ``st_name`` (a C-speed search, not a loop)."""
    needle = struct.pack(entry[0] + "I", st_name)  # st_name is the first field in both classes
    end = table.offset + (table.size // size) * size
    at = data.find(needle, table.offset, end)
    while at >= 0:
        if (at - table.offset) % size == 0:
            fields = struct.unpack_from(entry, data, at)
            if entry.endswith("HQQ"):
                _, info, _, shndx, value, _ = fields
            else:
                _, value, _, info, _, shndx = fields
            if shndx != _SHN_UNDEF and info >> 4 in (_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE):
                found.setdefault(name, value)
                return
        at = data.find(needle, at + 1, end)


def has_symbol_tables(data: bytes) -> bool:
    """Whether the image keeps a dynamic or a static symbol table (stripped static: neither)."""
    parsed = _sections(data)
    return parsed is not None and any(s.kind in (_SHT_SYMTAB, _SHT_DYNSYM) for s in parsed[1])


def bytes_at(data: bytes, address: int, length: int) -> bytes:
    """``length`` bytes of the image at virtual ``address`` (e.g. a function's first bytes)."""
    parsed = _sections(data)
    for s in parsed[1] if parsed else ():
        if s.kind != 8 and s.addr and s.addr <= address < s.addr + s.size:  # 8: NOBITS
            start = s.offset + address - s.addr
            return data[start : start + length]
    return b""


_SHT_DYNAMIC = 6
_DT_NEEDED, _DT_SONAME = 1, 14


def dynamic_names(data: bytes) -> tuple[str | None, tuple[str, ...]]:
    """(DT_SONAME, DT_NEEDED entries in order) of an ELF image: what the loader links by."""
    parsed = _sections(data)
    if parsed is None:
        return None, ()
    layout, sections = parsed
    entry = layout[0] + ("qQ" if layout.endswith("64") else "iI")
    size = struct.calcsize(entry)
    soname, needed = None, []
    for table in sections:
        if table.kind != _SHT_DYNAMIC or table.link >= len(sections):
            continue
        strtab = sections[table.link]
        end = table.offset + (table.size // size) * size
        for tag, value in struct.iter_unpack(entry, data[table.offset : end]):
            if tag in (_DT_NEEDED, _DT_SONAME):
                start = strtab.offset + value
                name = data[start : data.find(b"\0", start, strtab.offset + strtab.size)]
                if tag == _DT_NEEDED:
                    needed.append(os.fsdecode(name))
                else:
                    soname = os.fsdecode(name)
            elif tag == 0:  # DT_NULL ends the table
                break
    return soname, tuple(needed)
