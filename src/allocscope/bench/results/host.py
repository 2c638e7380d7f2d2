"""Host metadata a results document carries: the machine, the kernel, the libraries."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from allocscope import __version__
from allocscope.bench.record import RunRecord
from allocscope.bench.results.header import Host, Library


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- host metadata -----------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
            return value.strip()
    return platform.processor() or None


def _selected(setting: str | None) -> str | None:
    """'always [madvise] never' -> 'madvise'."""
    if setting and "[" in setting:
        return setting.split("[", 1)[1].split("]", 1)[0]
    return setting


def host() -> Host:
    thp = "/sys/kernel/mm/transparent_hugepage"
    mem = _read("/proc/meminfo") or ""
    total = next(
        (line.split()[1] for line in mem.splitlines() if line.startswith("MemTotal")), None
    )
    return Host(
        hostname=platform.node(),
        cpu_model=_cpu_model(),
        cpus=os.cpu_count(),
        cpus_usable=len(os.sched_getaffinity(0)),
        memory_bytes=int(total) * 1024 if total else None,
        kernel=platform.release(),
        machine=platform.machine(),
        libc=" ".join(platform.libc_ver()).strip() or None,
        thp_enabled=_selected(_read(f"{thp}/enabled")),
        thp_defrag=_selected(_read(f"{thp}/defrag")),
        python=sys.version.split()[0],
        python_implementation=platform.python_implementation(),
        python_executable=sys.executable,
        allocscope_version=__version__,
    )


def libraries_seen(runs: Iterable[RunRecord]) -> dict[str, Library]:
    """Each allocator library the children proved they ran on, with its version."""
    seen: dict[str, Library] = {}
    for run in runs:
        path = run.proof.path if run.proof else None
        if run.ok and run.proof and path and path not in seen:
            seen[path] = Library(run.proof.allocator, run.proof.version, os.path.realpath(path))
    return seen
