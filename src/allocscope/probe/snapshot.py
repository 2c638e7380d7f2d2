"""One record of everything the probe knows, and its stable JSON form.

Facts that cannot change while the process lives (allocator, FIPS, runtime) can be
detected once and passed in; memory and heap statistics are read on every call.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from allocscope import __version__
from allocscope.probe import allocator as allocator_mod
from allocscope.probe import fips as fips_mod
from allocscope.probe import glibc, jemalloc, memory, procfs
from allocscope.probe import held as held_mod
from allocscope.probe import runtime as runtime_mod
from allocscope.probe.errors import ProbeError
from allocscope.probe.glibc import ArenaLimitProof

SCHEMA = "allocscope.snapshot/1"

T = TypeVar("T")


@dataclass(frozen=True)
class JemallocReport:
    stats: jemalloc.JemallocStats
    options: dict[str, jemalloc.OptionValue]
    malloc_conf: tuple[jemalloc.ConfKey, ...]
    # jemalloc's own complaints about MALLOC_CONF, from a child that re-ran its parse
    # (None: not collected; only when the snapshot is asked to prove)
    conf_messages: tuple[str, ...] | None = None


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
    # A declared glibc arena limit, proved by observation (only when asked: it starts threads)
    arena_limit: ArenaLimitProof | None = None
    # What the allocator holds: in use, free and resident, releasable (see probe.held)
    held: held_mod.Held | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BACKGROUND_THREAD_LOST = (
    f"background_thread requested but not running (lost at fork): {jemalloc.FORK_FIX}"
)


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


def jemalloc_report(
    info: allocator_mod.AllocatorInfo, messages: bool = False
) -> JemallocReport | None:
    """jemalloc's statistics and options; ``messages`` also re-runs its conf parse in a
    child to collect what it says about MALLOC_CONF (see ``jemalloc.conf_messages``)."""
    if info.name != "jemalloc" or info.path is None:
        return None
    binding = jemalloc.bind(info.path)
    if binding is None:
        return None
    said = jemalloc.conf_messages() if messages and info.declared.malloc_conf else None
    return JemallocReport(
        stats=binding.stats(),
        options=binding.options(),
        malloc_conf=binding.compare_conf(info.declared.malloc_conf, said or ()),
        conf_messages=said,
    )


def snapshot(
    proc_root: str = procfs.DEFAULT_ROOT,
    *,
    allocator: allocator_mod.AllocatorInfo | None = None,
    fips: fips_mod.FipsInfo | None = None,
    runtime: runtime_mod.Runtime | None = None,
    prove: bool = False,
) -> Snapshot:
    """Probe this process. Pass earlier results to skip what cannot have changed.
    ``prove`` runs the experiments some facts need: a declared glibc arena limit (a few
    threads) and jemalloc's complaints about MALLOC_CONF (a child process).

    Never raises: a fact that cannot be read is left out (or reported as unknown) and the
    reason goes to ``errors``, so info, verify and the launcher always get a record.
    """
    errors: list[str] = []
    info = allocator or detect_allocator(proc_root, errors)
    je = soft(errors, "jemalloc statistics", lambda: jemalloc_report(info, messages=prove))
    heap = soft(errors, "glibc heap", glibc.heap) if info.name == "glibc" else None
    mem = soft(errors, "memory", lambda: memory.read(proc_root))
    holds = soft(
        errors,
        "allocator held",
        lambda: held_mod.read(
            info,
            proc_root,
            heap=heap,
            stats=je.stats if je else None,
            anon=mem.anon_rss_bytes if mem else None,
        ),
    )
    arenas = None
    if prove and info.name == "glibc":
        arenas = soft(errors, "glibc arena limit", glibc.arena_limit_proof)
    return Snapshot(
        schema=SCHEMA,
        allocscope_version=__version__,
        time=utc_now(),
        pid=os.getpid(),
        allocator=info,
        jemalloc=je,
        glibc=heap,
        memory=mem,
        fips=fips or soft(errors, "fips", lambda: fips_mod.probe(proc_root)) or unknown_fips(),
        runtime=runtime or runtime_mod.read(),
        errors=tuple(errors),
        warnings=faults(je),
        arena_limit=arenas,
        held=holds,
    )


def detect_allocator(
    proc_root: str = procfs.DEFAULT_ROOT, errors: list[str] | None = None
) -> allocator_mod.AllocatorInfo:
    """``allocator.detect`` that never raises: an unknown allocator, with the reason."""
    found: list[str] = [] if errors is None else errors
    info = soft(found, "allocator", lambda: allocator_mod.detect(proc_root))
    return info or unknown_allocator(found[-1])


def soft(errors: list[str], what: str, read: Callable[[], T]) -> T | None:
    """``read()``, or None with the reason appended to ``errors``: no probe path may end
    the command that asked (a library that only looks like an allocator, a /proc that is
    not there, a ctypes call that finds no symbol)."""
    try:
        return read()
    except ProbeError as e:
        errors.append(str(e) if what in str(e) else f"{what}: {e}")
    except Exception as e:  # reported, never raised
        errors.append(f"{what}: {type(e).__name__}: {e}")
    return None


def unknown_allocator(reason: str) -> allocator_mod.AllocatorInfo:
    declared = allocator_mod.Declared.from_environ()
    return allocator_mod.AllocatorInfo(
        name="unknown",
        version=None,
        path=None,
        source="unknown",
        confirmed_by=None,
        mapped_allocators=(),
        preload=(),
        declared=declared,
        python_allocator="unknown",
        warnings=(f"the allocator could not be detected ({reason})",),
    )


def unknown_fips() -> fips_mod.FipsInfo:
    """FIPS when the probe itself failed: reported off, with errors saying why (never on)."""
    return fips_mod.FipsInfo(
        state="off",
        reason="FIPS could not be probed (see errors)",
        openssl=None,
        hashlib_fips_mode=None,
        kernel_fips_enabled=None,
        md5=fips_mod.Md5Paths(*(False,) * 6),
        openssl_conf=os.environ.get("OPENSSL_CONF"),
        openssl_modules=os.environ.get("OPENSSL_MODULES"),
        errors=(),
    )
