"""One record of everything the probe knows, and its stable JSON form.

Facts that cannot change while the process lives (allocator, FIPS, runtime) can be
detected once and passed in; memory and heap statistics are read on every call.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from allocscope import __version__
from allocscope.probe import allocator as allocator_mod
from allocscope.probe import fips as fips_mod
from allocscope.probe import glibc, jemalloc, memory, procfs
from allocscope.probe import runtime as runtime_mod
from allocscope.probe.errors import ProbeError

SCHEMA = "allocscope.snapshot/1"


@dataclass(frozen=True)
class JemallocReport:
    stats: jemalloc.JemallocStats
    options: dict[str, jemalloc.OptionValue]
    malloc_conf: tuple[jemalloc.ConfKey, ...]


@dataclass(frozen=True)
class Snapshot:
    schema: str
    allocscope_version: str
    time: str
    pid: int
    allocator: allocator_mod.AllocatorInfo
    jemalloc: JemallocReport | None  # only when jemalloc serves malloc
    glibc: glibc.GlibcHeap | None  # only when glibc serves malloc
    memory: memory.Memory | None
    fips: fips_mod.FipsInfo
    runtime: runtime_mod.Runtime
    errors: tuple[str, ...]  # facts that could not be read, and why
    warnings: tuple[str, ...] = ()  # facts that were read and look wrong (see faults())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BACKGROUND_THREAD_LOST = "background_thread requested but not running (lost at fork)"


def background_thread_lost(report: JemallocReport | None) -> bool:
    """jemalloc was asked for its purging thread and runs without it: fork() dropped it."""
    return bool(
        report is not None
        and report.options.get("background_thread")
        and not report.stats.background_thread
    )


def faults(report: JemallocReport | None) -> tuple[str, ...]:
    return (BACKGROUND_THREAD_LOST,) if background_thread_lost(report) else ()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jemalloc_report(info: allocator_mod.AllocatorInfo) -> JemallocReport | None:
    if info.name != "jemalloc" or info.path is None:
        return None
    binding = jemalloc.bind(info.path)
    if binding is None:
        return None
    return JemallocReport(
        stats=binding.stats(),
        options=binding.options(),
        malloc_conf=binding.compare_conf(info.declared.malloc_conf),
    )


def snapshot(
    proc_root: str = procfs.DEFAULT_ROOT,
    *,
    allocator: allocator_mod.AllocatorInfo | None = None,
    fips: fips_mod.FipsInfo | None = None,
    runtime: runtime_mod.Runtime | None = None,
) -> Snapshot:
    """Probe this process. Pass earlier results to skip what cannot have changed."""
    errors: list[str] = []
    info = allocator or allocator_mod.detect(proc_root)
    try:
        je = jemalloc_report(info)
    except OSError as e:
        je = None
        errors.append(f"jemalloc statistics: {e}")
    heap = glibc.heap() if info.name == "glibc" else None
    try:
        mem: memory.Memory | None = memory.read(proc_root)
    except ProbeError as e:
        mem = None
        errors.append(str(e))
    return Snapshot(
        schema=SCHEMA,
        allocscope_version=__version__,
        time=utc_now(),
        pid=os.getpid(),
        allocator=info,
        jemalloc=je,
        glibc=heap,
        memory=mem,
        fips=fips or fips_mod.probe(proc_root),
        runtime=runtime or runtime_mod.read(),
        errors=tuple(errors),
        warnings=faults(je),
    )
