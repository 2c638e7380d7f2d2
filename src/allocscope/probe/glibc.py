"""glibc malloc's own counters. Only meaningful when glibc serves malloc."""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Mapping
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


# glibc's default arena limit is 8 per core on 64-bit systems (NARENAS_FROM_NCORES).
_DEFAULT_PER_CORE = 8 if ctypes.sizeof(ctypes.c_void_p) == 8 else 2
MAX_PROOF_THREADS = 64


@dataclass(frozen=True)
class ArenaLimitProof:
    """Whether glibc keeps the arena limit the environment declares, by observation."""

    declared: str  # e.g. "MALLOC_ARENA_MAX=2" or "GLIBC_TUNABLES=glibc.malloc.arena_max=2"
    limit: int | None  # the limit, when the value is a positive decimal integer
    threads: int  # threads that held an allocation at the same time
    arenas: int | None  # arenas glibc had then (malloc_info)
    proved: bool
    reason: str


def declared_arena_limit(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(declaration, value) for MALLOC_ARENA_MAX and GLIBC_TUNABLES' glibc.malloc.arena_max."""
    env = os.environ if environ is None else environ
    found = []
    if "MALLOC_ARENA_MAX" in env:
        found.append((f"MALLOC_ARENA_MAX={env['MALLOC_ARENA_MAX']}", env["MALLOC_ARENA_MAX"]))
    for item in env.get("GLIBC_TUNABLES", "").split(":"):
        name, sep, value = item.partition("=")
        if sep and name.strip() == "glibc.malloc.arena_max":
            found.append((f"GLIBC_TUNABLES={item}", value))
    return found


def arena_limit_proof(environ: Mapping[str, str] | None = None) -> ArenaLimitProof | None:
    """Prove a declared arena limit in this process (glibc must serve malloc), or say why
    it is unproved; None when no limit is declared.

    ``limit + 2`` threads each allocate and hold the allocation until all have: glibc then
    has exactly ``limit`` arenas when it keeps the limit, and one per thread (up to its
    default of 8 per core) when it does not. A value glibc would not read as written (not
    a positive decimal integer), one equal to the default, or one needing more than
    ``MAX_PROOF_THREADS`` threads is never called proved. The threads' arenas stay in the
    process (glibc never frees arenas): at most ``limit``, which was allowed anyway.
    """
    declared = declared_arena_limit(environ)
    if not declared:
        return None
    text = "; ".join(d for d, _ in declared)
    values = {v.strip() for _, v in declared}
    if len(values) > 1:
        return ArenaLimitProof(text, None, 0, count_arenas(), False, (
            f"{text}: two different limits declared; glibc takes whichever comes first in "
            "the environment, so neither is proved"
        ))  # fmt: skip
    value = values.pop()
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        return ArenaLimitProof(text, None, 0, count_arenas(), False, (
            f"{text}: unproved: not a positive decimal integer (glibc ignores such a value "
            f"or reads it otherwise); arenas now: {count_arenas()}"
        ))  # fmt: skip
    limit = int(value)
    cores = os.sysconf("SC_NPROCESSORS_ONLN")  # what glibc's __get_nprocs counts
    default = _DEFAULT_PER_CORE * max(1, cores)
    if limit == default:
        return ArenaLimitProof(text, limit, 0, count_arenas(), False, (
            f"{text}: unproved: it equals glibc's default here ({default} arenas on "
            f"{cores} cores), so keeping it looks the same as ignoring it"
        ))  # fmt: skip
    if limit + 2 > MAX_PROOF_THREADS:
        return ArenaLimitProof(text, limit, 0, count_arenas(), False, (
            f"{text}: unproved: observing it would take more than {MAX_PROOF_THREADS} threads"
        ))  # fmt: skip
    threads = limit + 2
    arenas = _arenas_with_threads(threads)
    if arenas is None:
        return ArenaLimitProof(text, limit, threads, None, False, (
            f"{text}: unproved: malloc_info could not be read"
        ))  # fmt: skip
    # With more threads than the limit, glibc makes exactly ``limit`` arenas; without the
    # limit it would make one per thread (up to its default), never exactly ``limit``.
    proved = arenas == limit
    verdict = "proved" if proved else "NOT in effect"
    return ArenaLimitProof(text, limit, threads, arenas, proved, (
        f"{text}: {verdict}: {arenas} arena{'' if arenas == 1 else 's'} after {threads} "
        "threads each held an allocation"
    ))  # fmt: skip


def _arenas_with_threads(count: int) -> int | None:
    """Arenas counted while ``count`` threads each hold a malloc'd block at once."""
    libc = native.libc()
    malloc, free = libc.malloc, libc.free
    malloc.argtypes, malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
    free.argtypes, free.restype = (ctypes.c_void_p,), None
    holding = threading.Barrier(count + 1)
    release = threading.Event()

    def hold() -> None:
        block = malloc(4096)  # a thread's first malloc attaches it to an arena
        try:
            holding.wait(10)
            release.wait(10)
        finally:
            free(block)

    workers = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
    for w in workers:
        w.start()
    try:
        holding.wait(10)
        return count_arenas()
    except threading.BrokenBarrierError:
        return None
    finally:
        release.set()
        for w in workers:
            w.join(10)
