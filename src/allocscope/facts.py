"""What this process knows about itself, detected once per pid.

The allocator, its effective options, FIPS and the runtime cannot change while a process
lives, and detecting them costs milliseconds (``/proc/self/maps``, OpenSSL, package
metadata): the collector, the mountable apps and their readiness answer from this record,
and read only memory and heap counters fresh. A forked worker has a new pid and so detects
again on first use instead of describing its parent.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from importlib import metadata

from allocscope.expectations import Check, Expectations, background_thread_check, check
from allocscope.probe import allocator, fips, jemalloc, procfs, runtime
from allocscope.probe import snapshot as snapshot_mod

# Servers a worker may run under, looked up among the modules it imported (first match).
SERVERS = ("gunicorn", "uvicorn", "granian", "hypercorn", "waitress", "daphne")


@dataclass(frozen=True)
class ProcessFacts:
    pid: int
    started: float  # when this pid first detected (for a worker: about when it started)
    allocator: allocator.AllocatorInfo
    fips: fips.FipsInfo
    runtime: runtime.Runtime
    jemalloc: jemalloc.Jemalloc | None = field(repr=False)  # None unless jemalloc serves
    # Judged once with ALLOCSCOPE_EXPECT_*: every check but background_thread, which can
    # change (fork, mallctl) and is judged on each call. None when the variables are bad.
    static_checks: tuple[Check, ...] | None
    expectations_error: str | None

    def snapshot(self) -> snapshot_mod.Snapshot:
        """A full snapshot without detecting again (memory and heap are read fresh)."""
        return snapshot_mod.snapshot(allocator=self.allocator, fips=self.fips, runtime=self.runtime)

    def checks(self) -> tuple[Check, ...]:
        """The readiness checks now; a bad ALLOCSCOPE_EXPECT_* value is a failed check."""
        if self.static_checks is None:
            return (Check("expectations", False, self.expectations_error or "unreadable"),)
        return self.static_checks + self.background_thread_checks()

    def background_thread_checks(self) -> tuple[Check, ...]:
        if self.jemalloc is None:
            return ()
        requested = bool(self.jemalloc.read("opt.background_thread", "bool"))
        live = bool(self.jemalloc.read("background_thread", "bool"))
        return tuple(background_thread_check(requested, live))


_servers: dict[int, str] = {}


def server() -> str:
    """'gunicorn 23.0.0' for the first known server this process imported; '' if none.

    Asked on every scrape: once found it is kept for the pid (package metadata is slow).
    """
    found = _servers.get(os.getpid())
    if found is not None:
        return found
    for name in SERVERS:
        if name in sys.modules:
            try:
                found = f"{name} {metadata.version(name)}"
            except metadata.PackageNotFoundError:
                found = name
            _servers[os.getpid()] = found
            return found
    return ""


def detect(proc_root: str = procfs.DEFAULT_ROOT) -> ProcessFacts:
    info = allocator.detect(proc_root)
    je = jemalloc.bind(info.path) if info.name == "jemalloc" and info.path else None
    facts = ProcessFacts(
        pid=os.getpid(),
        started=time.time(),
        allocator=info,
        fips=fips.probe(proc_root),
        runtime=runtime.read(),
        jemalloc=je,
        static_checks=None,
        expectations_error=None,
    )
    try:
        want = Expectations.from_environ()
    except ValueError as e:
        return replace(facts, expectations_error=str(e))
    snap = facts.snapshot()
    judged = tuple(c for c in check(snap, want) if c.name != "background_thread")
    return replace(facts, static_checks=judged)


_lock = threading.Lock()
_current: ProcessFacts | None = None


def current() -> ProcessFacts:
    """This process's facts: detected on first use in each pid, then reused."""
    global _current
    facts = _current
    if facts is not None and facts.pid == os.getpid():
        return facts
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = detect()
        return _current
