"""Process memory from /proc/<pid>/status and smaps_rollup (read fresh on every call)."""

from __future__ import annotations

from dataclasses import dataclass

from allocscope.probe import procfs
from allocscope.probe.errors import ProbeError


@dataclass(frozen=True)
class Memory:
    rss_bytes: int
    peak_rss_bytes: int  # VmHWM
    anon_rss_bytes: int | None
    file_rss_bytes: int | None
    swap_bytes: int | None
    pss_bytes: int | None  # smaps_rollup, where the kernel offers it
    uss_bytes: int | None  # private clean + private dirty
    anon_huge_pages_bytes: int | None = None  # THP backing anonymous memory (smaps_rollup)


def read(
    proc_root: str = procfs.DEFAULT_ROOT, pid: int | str = "self", *, rollup: bool = True
) -> Memory:
    """Memory of ``pid``. ``rollup=False`` skips smaps_rollup, which costs a page walk."""
    status = procfs.key_values(procfs.read_text("status", proc_root, pid))
    if "VmRSS" not in status:
        raise ProbeError(f"{procfs.proc_path('status', proc_root, pid)} has no VmRSS line")
    pss = uss = None
    smaps: dict[str, int] = {}
    if rollup:
        try:
            smaps = procfs.key_values(procfs.read_text("smaps_rollup", proc_root, pid))
        except ProbeError:
            smaps = {}  # older kernels, or no permission: PSS/USS stay unknown
        pss = smaps.get("Pss")
        if "Private_Clean" in smaps and "Private_Dirty" in smaps:
            uss = smaps["Private_Clean"] + smaps["Private_Dirty"]
    return Memory(
        rss_bytes=status["VmRSS"],
        peak_rss_bytes=status.get("VmHWM", status["VmRSS"]),
        anon_rss_bytes=status.get("RssAnon"),
        file_rss_bytes=status.get("RssFile"),
        swap_bytes=status.get("VmSwap"),
        pss_bytes=pss,
        uss_bytes=uss,
        anon_huge_pages_bytes=smaps.get("AnonHugePages") if rollup else None,
    )


def mib(n: int | None) -> str:
    """'12.3 MiB', or 'n/a' for a figure that could not be read (info, inspect, attach)."""
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"
