"""What the allocator holds for the process, one definition for every reader.

``inspect --attach``'s verdict, the snapshot, the Prometheus collector and its rules all
read these three figures, per allocator:

- **in use**: live allocations, as the allocator counts them;
- **free**: memory the allocator keeps *resident* beside them, i.e. what the process
  holds without using it;
- **releasable**: what a trim or purge can give back now (at most ``free``).

Never from an allocator's books alone: glibc's ``mallinfo2`` keeps counting as free the
pages ``malloc_trim`` already returned with ``MADV_DONTNEED`` (a process reported 501 MiB
"free" beside 37.6 MiB of anonymous RSS). ``free`` never exceeds the anonymous RSS.

- glibc: resident pages of malloc's arenas (``[heap]`` and the 64 MiB-aligned heaps of
  the other arenas, found in ``/proc/self/maps``, their pages counted by ``mincore``)
  minus ``mallinfo2``'s in-use bytes. Every
  in-use chunk of an arena lies in those mappings, and a page ``malloc_trim`` returned is
  no longer resident, so the difference is free memory still resident (plus chunk headers).
  An in-use chunk never touched is not resident either: the error can only make ``free``
  smaller, never larger than what the process holds. mmapped chunks are in use.
- jemalloc: ``stats.resident - stats.allocated - stats.metadata``: free pages and the
  slack of partly used slabs (metadata is jemalloc's own overhead, about 4 MiB in any
  process: no purge returns it, so it is not called free); a purge returns the dirty and
  muzzy pages (``stats.arenas.<all>.pdirty/pmuzzy``).
- tcmalloc: ``MallocExtension_GetNumericProperty``: ``generic.heap_size`` minus
  ``tcmalloc.pageheap_unmapped_bytes`` is resident, minus
  ``generic.current_allocated_bytes`` in use; ``ReleaseFreeMemory`` returns
  ``tcmalloc.pageheap_free_bytes``.
- mimalloc: a release build (Debian's) keeps no process-wide count of live bytes:
  ``mi_stats`` counts only segments and commits, and ``mi_heap_visit_blocks`` sees the
  calling thread's heap only (measured: 2.5 MiB of 42 MiB live after four threads had
  allocated and exited). So no free figure is claimed; ``mi_process_info``'s committed
  bytes are reported, and ``mi_collect`` (``--trim``) measures what was free.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from allocscope.probe import glibc, jemalloc, memory, native, procfs
from allocscope.probe.allocator import AllocatorInfo

# glibc's non-main arenas live in heaps of HEAP_MAX_SIZE (64 MiB on 64-bit), mapped
# aligned to that size: a read-write part that grows, and a PROT_NONE reserve after it.
HEAP_MAX_SIZE = 64 * 2**20


class Region(NamedTuple):
    start: int
    end: int
    perms: str
    path: str
    rss: int = 0  # resident bytes (smaps or mincore); 0 when only read from maps

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Held:
    allocator: str
    in_use_bytes: int | None
    free_bytes: int | None  # resident, kept by the allocator, not in use
    releasable_bytes: int | None  # what a trim or purge can return now (<= free)
    anon_rss_bytes: int | None
    source: str  # how the figures were measured, in a few words

    @property
    def held_bytes(self) -> int | None:
        """What the allocator holds resident: in use plus free."""
        if self.in_use_bytes is None or self.free_bytes is None:
            return None
        return self.in_use_bytes + self.free_bytes


def glibc_heaps(regions: Sequence[Region]) -> tuple[list[Region], list[Region]]:
    """(main arena's [heap] mappings, read-write parts of the other arenas' heaps)."""
    main = [m for m in regions if m.path == "[heap]"]
    heaps = []
    for i, m in enumerate(regions):
        if m.path or m.start % HEAP_MAX_SIZE or not m.perms.startswith("rw"):
            continue
        end, j = m.end, i + 1
        while (
            j < len(regions)
            and regions[j].start == end
            and not regions[j].path
            and end < m.start + HEAP_MAX_SIZE
        ):
            if not regions[j].perms.startswith("---"):
                break
            end = regions[j].end
            j += 1
        if end - m.start == HEAP_MAX_SIZE or (m.size == HEAP_MAX_SIZE and j == i + 1):
            heaps.append(m)
    return main, heaps


_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+ ?(.*)$")


def parse_smaps(text: str) -> list[Region]:
    """Mappings with their resident bytes, from /proc/PID/smaps."""
    regions: list[Region] = []
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            start, end, perms, path = m.groups()
            regions.append(Region(int(start, 16), int(end, 16), perms, path.strip()))
        elif line.startswith("Rss:") and regions:
            regions[-1] = regions[-1]._replace(rss=procfs.key_values(line)["Rss"])
    return regions


def parse_maps(text: str) -> list[Region]:
    """Mappings from /proc/PID/maps (no resident bytes: see ``mincore_resident``)."""
    return [
        Region(int(m[1], 16), int(m[2], 16), m[3], m[4].strip())
        for line in text.splitlines()
        if (m := _HEADER.match(line))
    ]


def glibc_resident(regions: Sequence[Region]) -> int:
    main, heaps = glibc_heaps(regions)
    return sum(r.rss for r in (*main, *heaps))


def mincore_resident(regions: Sequence[Region]) -> list[Region]:
    """``regions`` of this process with their resident bytes from ``mincore``: a look at
    the page tables of these ranges only, where /proc/self/smaps walks every mapping
    (benchmarks/collector_cost.py, glibc, load 25 on 2 cores: a scrape took 0.9 ms without
    these figures, 23 ms reading smaps, 3.9 ms with maps and mincore)."""
    libc = native.libc()
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    libc.mincore.restype = ctypes.c_int
    page = os.sysconf("SC_PAGE_SIZE")
    out = []
    for r in regions:
        vec = ctypes.create_string_buffer(r.size // page)
        if libc.mincore(r.start, r.size, vec) != 0:
            raise native.os_error(ctypes.get_errno(), f"mincore of {r.start:#x}-{r.end:#x}")
        out.append(r._replace(rss=sum(b & 1 for b in vec.raw) * page))
    return out


def _capped(free: int, anon: int | None) -> int:
    return max(0, free if anon is None else min(free, anon))


def of_glibc(heap: glibc.GlibcHeap, arena_resident: int, anon: int | None) -> Held:
    free = _capped(arena_resident - heap.in_use_bytes, anon)
    return Held(
        "glibc",
        heap.in_use_bytes + heap.mmap_bytes,
        free,
        free,  # malloc_trim returns free pages; only resident ones change RSS
        anon,
        "resident pages of malloc's arenas (mincore) minus mallinfo2's in-use bytes",
    )


def of_jemalloc(stats: jemalloc.JemallocStats, dirty_muzzy: int | None, anon: int | None) -> Held:
    free = _capped(stats.resident - stats.allocated - stats.metadata, anon)
    return Held(
        "jemalloc",
        stats.allocated,
        free,
        None if dirty_muzzy is None else min(dirty_muzzy, free),
        anon,
        "stats.resident minus allocated and metadata; a purge returns the dirty and muzzy pages",
    )


def of_tcmalloc(props: dict[str, int], anon: int | None) -> Held:
    in_use = props["generic.current_allocated_bytes"]
    resident = props["generic.heap_size"] - props["tcmalloc.pageheap_unmapped_bytes"]
    free = _capped(resident - in_use, anon)
    return Held(
        "tcmalloc",
        in_use,
        free,
        min(props["tcmalloc.pageheap_free_bytes"], free),
        anon,
        "heap_size minus unmapped minus current_allocated_bytes (MallocExtension)",
    )


def of_mimalloc(committed: int, anon: int | None) -> Held:
    return Held(
        "mimalloc",
        None,
        None,
        None,
        anon,
        f"mimalloc has {committed / 2**20:.1f} MiB committed (mi_process_info); its release "
        "build counts no live bytes process-wide, so only a collect (--trim) tells free "
        "memory from memory in use",
    )


# --- reading them in this process ---------------------------------------------------------

TCMALLOC_PROPERTIES = (
    "generic.current_allocated_bytes",
    "generic.heap_size",
    "tcmalloc.pageheap_free_bytes",
    "tcmalloc.pageheap_unmapped_bytes",
)


def tcmalloc_properties(
    lib: ctypes.CDLL, names: Iterable[str] = TCMALLOC_PROPERTIES
) -> dict[str, int]:
    fn = lib.MallocExtension_GetNumericProperty
    fn.argtypes, fn.restype = (ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)), ctypes.c_int
    out = {}
    for name in names:
        value = ctypes.c_size_t()
        if not fn(name.encode(), ctypes.byref(value)):
            raise OSError(f"tcmalloc has no property {name}")
        out[name] = value.value
    return out


def mimalloc_committed(lib: ctypes.CDLL) -> int:
    """Bytes mimalloc has committed from the OS (mi_process_info)."""
    values = [ctypes.c_size_t() for _ in range(8)]
    lib.mi_process_info.argtypes = (ctypes.POINTER(ctypes.c_size_t),) * 8
    lib.mi_process_info.restype = None
    lib.mi_process_info(*(ctypes.byref(v) for v in values))
    return values[5].value


def jemalloc_dirty_muzzy(binding: jemalloc.Jemalloc) -> int:
    page = int(binding.read("arenas.page", "size_t") or 0)
    pages = sum(
        int(binding.read(f"stats.arenas.{jemalloc.ALL_ARENAS}.{k}", "size_t") or 0)
        for k in ("pdirty", "pmuzzy")
    )
    return pages * page


def read(
    info: AllocatorInfo,
    proc_root: str = procfs.DEFAULT_ROOT,
    *,
    heap: glibc.GlibcHeap | None = None,
    stats: jemalloc.JemallocStats | None = None,
    anon: int | None = None,
) -> Held:
    """The three figures for the allocator serving this process (``info``). A caller that
    has just read mallinfo2 (``heap``), jemalloc's ``stats`` or the anonymous RSS passes
    them, so that one record agrees with itself.

    Raises OSError or ProbeError when they cannot be read; an allocator we have no
    counters for gets a Held whose figures are None.
    """
    if anon is None:
        anon = memory.read(proc_root, rollup=False).anon_rss_bytes
    if info.name == "glibc":
        if proc_root == procfs.DEFAULT_ROOT:  # this process: only the arenas' pages
            main, heaps = glibc_heaps(parse_maps(procfs.read_text("maps", proc_root)))
            resident = sum(r.rss for r in mincore_resident([*main, *heaps]))
        else:  # a fake /proc tree (tests): its smaps says what is resident
            resident = glibc_resident(parse_smaps(procfs.read_text("smaps", proc_root)))
        return of_glibc(heap or glibc.heap(), resident, anon)
    lib = native.already_loaded(info.path) if info.path else None
    if info.name == "jemalloc" and lib is not None:
        binding = jemalloc.Jemalloc(lib)
        return of_jemalloc(stats or binding.stats(), jemalloc_dirty_muzzy(binding), anon)
    if info.name == "tcmalloc" and lib is not None:
        return of_tcmalloc(tcmalloc_properties(lib), anon)
    if info.name == "mimalloc" and lib is not None:
        return of_mimalloc(mimalloc_committed(lib), anon)
    return Held(info.name, None, None, None, anon, f"{info.name}: no counters we read")
