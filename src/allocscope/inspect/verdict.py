"""``inspect --attach``'s verdict: leak (live objects) or fragmentation (free memory the
allocator keeps resident), from the figures of ``allocscope.probe.held``.

Free memory is what the process *holds*: resident pages, never an allocator's books (glibc
counts trimmed pages as free), and never more than the anonymous RSS. After a trim or a
purge the figures are read again, so the verdict changes with what was returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from allocscope.probe.memory import mib

# Free memory under this is never called fragmentation: allocators keep that much slack by
# design in a healthy process (jemalloc's pages within their decay time, glibc's top pad
# and 128 KiB trim threshold per arena, tcmalloc's thread caches, up to 32 MiB by default).
# Measured here: 1.3-2.3 MiB left after a glibc trim, 1 MiB after a jemalloc purge, 26 MiB
# of tcmalloc caches after ReleaseFreeMemory, in processes of 15-43 MiB anonymous RSS.
FLOOR_BYTES = 16 * 2**20

_RETURNS = {
    "glibc": "a malloc_trim could return up to {r}",
    "jemalloc": "a purge returns {r} (dirty and muzzy pages); the rest sits in partly used "
    "slabs and extents and returns only as they empty",
    "tcmalloc": "ReleaseFreeMemory returns {r} (free pages of the page heap); the rest sits "
    "in size-class and thread caches",
}


@dataclass(frozen=True)
class Verdict:
    kind: Literal["fragmentation", "objects", "unknown"]
    held_bytes: int | None  # anonymous resident memory of the process
    in_use_bytes: int | None  # live allocations, as the allocator counts them
    free_held_bytes: int | None  # kept by the allocator, free and resident
    releasable_bytes: int | None  # what a trim/purge could give back now (an upper bound)
    sentence: str


def judge(snap: dict[str, Any], python: dict[str, Any], returned: int | None = None) -> Verdict:
    """Leak or fragmentation, from the snapshot's ``held`` figures. ``returned``: the RSS a
    trim gave back, measured (the only free figure for an allocator that counts none)."""
    h = snap.get("held") or {}
    anon = h.get("anon_rss_bytes") or (snap.get("memory") or {}).get("anon_rss_bytes")
    name = h.get("allocator") or (snap.get("allocator") or {}).get("name", "unknown")
    in_use, free, releasable = h.get("in_use_bytes"), h.get("free_bytes"), h.get("releasable_bytes")
    if in_use is None or free is None:
        source = h.get("source") or f"{name} has no counters we read"
        if returned is not None and returned >= FLOOR_BYTES:
            sentence = (
                f"fragmentation: the collect returned {mib(returned)} of RSS: that much was "
                f"free memory {name} kept ({source})"
            )
            return Verdict("fragmentation", anon, None, returned, returned, sentence)
        return Verdict("unknown", anon, None, None, None, source)
    blocks = python.get("allocated_blocks")
    if free > in_use and free >= FLOOR_BYTES:
        returns = _RETURNS.get(name, "a trim could return up to {r}").format(r=mib(releasable))
        sentence = (
            f"fragmentation: {name} keeps {mib(free)} free and resident beside "
            f"{mib(in_use)} in use; {returns}"
        )
        return Verdict("fragmentation", anon, in_use, free, releasable, sentence)
    sentence = (
        f"objects: {mib(in_use)} are live allocations ({blocks} Python blocks), "
        f"{mib(free)} free and resident in {name}: a leak or a cache, not the allocator"
    )
    return Verdict("objects", anon, in_use, free, releasable, sentence)
