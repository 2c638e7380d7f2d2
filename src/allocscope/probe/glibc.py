"""glibc malloc's own counters. Only meaningful when glibc serves malloc."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass

from allocscope.probe import native


class _Mallinfo2(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    )  # fmt: skip


@dataclass(frozen=True)
class GlibcHeap:
    arena_bytes: int  # non-mmapped space obtained from the OS (all arenas)
    in_use_bytes: int  # uordblks: allocated in arenas
    free_bytes: int  # fordblks: free but kept by malloc
    mmap_bytes: int  # hblkhd: in mmapped chunks
    mmap_chunks: int
    releasable_bytes: int  # keepcost: trimmable at the top of the main heap
    arenas: int | None  # counted from malloc_info; None if it could not be read


def heap() -> GlibcHeap:
    fn = native.libc().mallinfo2
    fn.argtypes, fn.restype = (), _Mallinfo2
    info = fn()
    return GlibcHeap(
        arena_bytes=info.arena,
        in_use_bytes=info.uordblks,
        free_bytes=info.fordblks,
        mmap_bytes=info.hblkhd,
        mmap_chunks=info.hblks,
        releasable_bytes=info.keepcost,
        arenas=count_arenas(),
    )


def count_arenas() -> int | None:
    """Arenas glibc has created (MALLOC_ARENA_MAX caps this), from malloc_info's XML."""
    libc = native.libc()
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    libc.open_memstream.argtypes = (
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_size_t),
    )
    libc.open_memstream.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        rc = libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)
    text = ctypes.string_at(buf.value, size.value).decode(errors="replace") if buf.value else ""
    libc.free.argtypes = (ctypes.c_void_p,)
    libc.free(buf)
    return len(re.findall(r"<heap nr=", text)) if rc == 0 else None


def trim(pad: int = 0) -> bool:
    """malloc_trim: give free memory back to the OS; True if any was released."""
    fn = native.libc().malloc_trim
    fn.argtypes, fn.restype = (ctypes.c_size_t,), ctypes.c_int
    return bool(fn(pad))
