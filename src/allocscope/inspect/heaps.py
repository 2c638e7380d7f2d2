"""The heaps of another process: glibc's arenas (from its maps, their resident part from
/proc/PID/pagemap) and jemalloc's background threads (by their names).

A part that cannot be read raises OSError and the caller records it as unknown with the
reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from allocscope.inspect.procinfo import Mapping
from allocscope.probe import held


@dataclass(frozen=True)
class GlibcHeaps:
    main_heap_bytes: int  # the brk heap ([heap]): the main arena
    arena_heaps: int  # 64 MiB-aligned heaps of the other arenas (an arena may chain several)
    arena_heap_bytes: int  # their read-write (committed) part
    # Resident parts, from /proc/PID/pagemap (None when it was not read or not readable).
    main_heap_resident_bytes: int | None = None
    arena_heap_resident_bytes: int | None = None

    def fragmentation_estimate(self, anon_rss_bytes: int | None) -> float | None:
        """An ESTIMATE from outside: the share of the process's anonymous RSS resident in
        glibc's heaps. From outside, a free chunk cannot be told from a used one, so this
        is the most the heaps could hold free, not what they do (--attach reads mallinfo2).
        High together with RSS growth and many arena heaps is the glibc fragmentation shape."""
        if self.main_heap_resident_bytes is None or self.arena_heap_resident_bytes is None:
            return None
        if not anon_rss_bytes:
            return None
        held = self.main_heap_resident_bytes + self.arena_heap_resident_bytes
        return min(1.0, held / anon_rss_bytes)


def glibc_heaps(maps: list[Mapping], pagemap: str | None = None) -> GlibcHeaps:
    """The heaps in ``maps``; with ``pagemap`` (/proc/PID/pagemap), their resident bytes
    too (OSError when it cannot be read)."""
    main, heaps = held.glibc_heaps([held.Region(m.start, m.end, m.perms, m.path) for m in maps])
    sizes = sum(m.size for m in main), len(heaps), sum(m.size for m in heaps)
    if pagemap is None:
        return GlibcHeaps(*sizes)
    resident = resident_bytes(pagemap, main), resident_bytes(pagemap, heaps)
    return GlibcHeaps(*sizes, *resident)


_PRESENT = bytes(1 if i & 0x80 else 0 for i in range(256))  # bit 63 of a pagemap entry
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pagemap: str, ranges: list[held.Region]) -> int:
    """Resident bytes in ``ranges`` by /proc/PID/pagemap: 8 bytes per page, bit 63 set
    when the page is in RAM. Reads only these ranges (a heap's pages), where smaps would
    walk every mapping of the process. OSError when it cannot be read."""
    resident = 0
    with open(pagemap, "rb", buffering=0) as f:
        for r in ranges:
            first, count = r.start // _PAGE, r.size // _PAGE
            data = os.pread(f.fileno(), count * 8, first * 8)
            # The top byte of each little-endian entry holds bit 63: count those >= 0x80.
            resident += data[7::8].translate(_PRESENT).count(1)
    return resident * _PAGE


def jemalloc_background_threads(task_names: list[str]) -> int:
    """jemalloc names its background threads (background_thread:true) jemalloc_bg_thd."""
    return sum(1 for name in task_names if name.strip() == "jemalloc_bg_thd")
