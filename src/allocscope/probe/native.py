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


class _LinkMap(ctypes.Structure):
    pass


_LinkMap._fields_ = (
    ("l_addr", ctypes.c_void_p),
    ("l_name", ctypes.c_char_p),
    ("l_ld", ctypes.c_void_p),
    ("l_next", ctypes.POINTER(_LinkMap)),
    ("l_prev", ctypes.POINTER(_LinkMap)),
)
_RTLD_DI_LINKMAP = 2


def loaded_objects() -> list[str]:
    """Shared objects in the global lookup order (the main program, unnamed, excluded)."""
    dlinfo = libc().dlinfo
    dlinfo.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
    dlinfo.restype = ctypes.c_int
    entry = ctypes.POINTER(_LinkMap)()
    if dlinfo(libc()._handle, _RTLD_DI_LINKMAP, ctypes.byref(entry)) != 0:
        return []
    names = []
    while entry:
        name = entry.contents.l_name
        if name:
            names.append(os.fsdecode(name))
        entry = entry.contents.l_next
    return names


def definer(symbol: str) -> str | None:
    """The shared object whose definition of ``symbol`` the process uses.

    ``dlsym(RTLD_DEFAULT)`` answers that directly, except in a non-PIE executable that
    takes the symbol's address (Debian's /usr/bin/python3 does, for malloc): then it
    answers with the executable's PLT stub. In that case walk the lookup order for the
    first object that defines the symbol itself.
    """
    address = symbol_address(libc(), symbol)
    path = object_containing(address) if address else None
    objects = loaded_objects()
    if path is None or path in objects or not objects:
        return path
    for name in objects:
        lib = already_loaded(name)
        own = symbol_address(lib, symbol) if lib is not None else None
        if own is not None and object_containing(own) == name:
            return name
    return path


def os_error(rc: int, what: str) -> OSError:
    """Turn a C error number into an OSError that names what failed."""
    return OSError(rc, f"{what}: {os.strerror(rc)}")
