"""What inspect reads besides the allocator: glibc heaps, crypto, the container.

Each reader takes what it needs and returns a small record; a part that cannot be read
raises OSError and the caller records it as unknown with the reason.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

from allocscope.inspect.procinfo import Mapping
from allocscope.probe import held, procfs


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


@dataclass(frozen=True)
class Crypto:
    libcrypto: str | None  # the libcrypto mapped, if any
    fips_provider: str | None  # OpenSSL's fips.so, when mapped (loaded by the process)
    openssl_conf: str | None  # OPENSSL_CONF the process was started with
    openssl_modules: str | None
    kernel_fips_enabled: bool | None  # /proc/sys/crypto/fips_enabled; None if absent


def crypto(maps: list[Mapping], env: MappingABC[str, str] | None, proc_root: str) -> Crypto:
    paths = list(dict.fromkeys(m.path for m in maps if m.path.startswith("/")))  # once each
    libcrypto = next((p for p in paths if re.match(r"libcrypto\.so", os.path.basename(p))), None)
    fips = next((p for p in paths if os.path.basename(p) == "fips.so"), None)
    kernel = kernel_fips_enabled(proc_root)
    conf = env.get("OPENSSL_CONF") if env is not None else None
    modules = env.get("OPENSSL_MODULES") if env is not None else None
    return Crypto(libcrypto, fips, conf, modules, kernel)


@functools.lru_cache(maxsize=8)
def kernel_fips_enabled(proc_root: str) -> bool | None:
    """/proc/sys/crypto/fips_enabled, read once: it is set at boot (None if absent)."""
    try:
        return procfs.read_text("sys/crypto/fips_enabled", proc_root, "").strip() == "1"
    except Exception:
        return None


@dataclass(frozen=True)
class Container:
    cgroup: str | None  # the memory cgroup's path (cgroup v2: the unified path)
    container_id: (
        str | None
    )  # 64 hex digits, when the path carries one (docker, containerd, cri-o, podman)
    memory_current_bytes: int | None
    memory_max_bytes: int | None  # None: no limit (or unknown; see unknowns)


_CONTAINER_ID = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)")
_V1_NO_LIMIT = 2**60  # cgroup v1 reports "no limit" as a page-rounded LONG_MAX


def container(cgroup_text: str, cgroup_root: str = "/sys/fs/cgroup") -> tuple[Container, list[str]]:
    """The container record and, for each figure that could not be read, why."""
    problems: list[str] = []
    v1_memory = v2 = None
    for line in cgroup_text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[1] == "":
            v2 = fields[2]
        elif "memory" in fields[1].split(","):
            v1_memory = fields[2]
    path = v1_memory if v1_memory is not None else v2
    found = _CONTAINER_ID.search(cgroup_text.replace("\n", "/\n"))
    current = limit = None
    if v1_memory is not None and os.path.isdir(os.path.join(cgroup_root, "memory")):
        base = os.path.join(cgroup_root, "memory") + v1_memory
        current = _read_int(os.path.join(base, "memory.usage_in_bytes"), problems)
        limit = _read_int(os.path.join(base, "memory.limit_in_bytes"), problems)
        if limit is not None and limit >= _V1_NO_LIMIT:
            limit = None
    elif v2 is not None:
        unified = os.path.join(cgroup_root, "unified")
        base = (unified if os.path.isdir(unified) else cgroup_root) + v2
        current = _read_int(os.path.join(base, "memory.current"), problems)
        limit = _read_int(os.path.join(base, "memory.max"), problems)  # "max" reads as None
    found_id = found.group(1) if found else None
    return Container(path, found_id, current, limit), problems


def _read_int(path: str, problems: list[str]) -> int | None:
    """An integer file of the cgroup ('max' is None); a failure is noted in ``problems``."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError as e:
        problems.append(f"cannot read {path}: {e.strerror or e}")
        return None
    return int(text) if text.isdigit() else None
