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

from allocscope.expectations import Check, Expectations, check
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
    want: Expectations | None  # ALLOCSCOPE_EXPECT_*; None when a variable is unreadable
    expectations_error: str | None
    # Judged once: nothing in them can change, unless jemalloc serves (its background
    # thread can stop at fork, or by mallctl): then checks() judges again on every call.
    base: snapshot_mod.Snapshot = field(repr=False)
    judged: tuple[Check, ...]

    def snapshot(self) -> snapshot_mod.Snapshot:
        """A full snapshot without detecting again (memory and heap are read fresh)."""
        return snapshot_mod.snapshot(allocator=self.allocator, fips=self.fips, runtime=self.runtime)

    def checks(self) -> tuple[Check, ...]:
        """The readiness checks now; a bad ALLOCSCOPE_EXPECT_* value is a failed check."""
        if self.want is None:
            return (Check("expectations", False, self.expectations_error or "unreadable"),)
        if self.jemalloc is None:
            return self.judged
        now = replace(self.base, jemalloc=snapshot_mod.jemalloc_report(self.allocator))
        return tuple(check(now, self.want))


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
    probed, interpreter = fips.probe(proc_root), runtime.read()
    base = snapshot_mod.snapshot(proc_root, allocator=info, fips=probed, runtime=interpreter)
    want: Expectations | None = None
    error = None
    try:
        want = Expectations.from_environ()
    except ValueError as e:
        error = str(e)
    return ProcessFacts(
        pid=os.getpid(),
        started=time.time(),
        allocator=info,
        fips=probed,
        runtime=interpreter,
        jemalloc=je,
        want=want,
        expectations_error=error,
        base=base,
        judged=tuple(check(base, want)) if want is not None else (),
    )


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
