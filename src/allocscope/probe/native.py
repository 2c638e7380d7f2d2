"""ctypes plumbing shared by the probe: reach libraries that are already mapped.

We never load a second copy of a library: ``RTLD_NOLOAD`` returns a handle only when the
object is already in the process, so statistics always come from the copy that serves.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache


class _DlInfo(ctypes.Structure):
    _fields_ = (
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    )


@cache
def libc() -> ctypes.CDLL:
    """The C library (and, through it, the global symbol scope)."""
    return ctypes.CDLL(None, use_errno=True)


def already_loaded(path: str) -> ctypes.CDLL | None:
    """A handle on ``path`` if the process has it mapped; ``None`` otherwise."""
    try:
        return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY, use_errno=True)
    except OSError:
        return None


def symbol_address(lib: ctypes.CDLL, name: str) -> int | None:
    """Address that ``dlsym`` resolves ``name`` to through ``lib``, or None."""
    try:
        func = getattr(lib, name)
    except AttributeError:
        return None
    return ctypes.cast(func, ctypes.c_void_p).value


def object_containing(address: int) -> str | None:
    """Path of the shared object whose mapping holds ``address`` (dladdr)."""
    dladdr = libc().dladdr
    dladdr.argtypes = (ctypes.c_void_p, ctypes.POINTER(_DlInfo))
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def os_error(rc: int, what: str) -> OSError:
    """Turn a C error number into an OSError that names what failed."""
    return OSError(rc, f"{what}: {os.strerror(rc)}")
