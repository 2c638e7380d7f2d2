"""Ask the serving allocator to return free memory to the OS now (the one probe that writes).

Callers use it to tell memory the allocator merely keeps from memory the program holds.
"""

from __future__ import annotations

import ctypes

from allocscope.probe import glibc, jemalloc, native
from allocscope.probe.allocator import AllocatorInfo

# The C entry points each allocator offers for "give back what you can".
_CALLS = {
    "mimalloc": ("mi_collect", (ctypes.c_bool,), (True,)),
    "tcmalloc": ("MallocExtension_ReleaseFreeMemory", (), ()),
}


def release(info: AllocatorInfo) -> str:
    """Release free memory; return a sentence saying what was done (or why it failed)."""
    try:
        return _release(info)
    except (AttributeError, OSError) as e:  # e.g. a library named like jemalloc that is not
        return f"{info.name}: purge failed: {e}"


def _release(info: AllocatorInfo) -> str:
    if info.name == "glibc":
        released = glibc.trim()
        return f"glibc malloc_trim(0): {'released memory' if released else 'nothing to release'}"
    lib = native.already_loaded(info.path) if info.path else None
    if lib is None:
        return f"{info.name}: no purge available"
    if info.name == "jemalloc":
        jemalloc.Jemalloc(lib).purge()
        return f"jemalloc arena.{jemalloc.ALL_ARENAS}.purge: dirty and muzzy pages returned"
    if info.name in _CALLS:
        symbol, argtypes, args = _CALLS[info.name]
        fn = getattr(lib, symbol)
        fn.argtypes, fn.restype = argtypes, None
        fn(*args)
        return f"{info.name} {symbol}: done"
    return f"{info.name}: no purge available"
