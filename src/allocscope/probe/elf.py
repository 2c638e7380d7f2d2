"""Just enough ELF to say why the loader would refuse a file named in LD_PRELOAD."""

from __future__ import annotations

import struct
import sys

_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv", 21: "ppc64"}


def describe_machine(code: int) -> str:
    return _MACHINES.get(code, f"machine {code}")


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
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return "not an ELF file"
    bits = {1: 32, 2: 64}.get(head[4], 0)
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", head[18:20])
    return bits, machine


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
