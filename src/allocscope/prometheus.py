"""allocscope's Prometheus collector, for any application and any registry.

    from prometheus_client import REGISTRY
    from allocscope.prometheus import AllocscopeCollector

    REGISTRY.register(AllocscopeCollector())

Every series carries the ``pid`` of the process that answered the scrape: under a pre-fork
server one scrape reaches one worker, and its series are that worker's (see
``allocscope.multiprocess`` for every worker in one scrape). Nothing is summed across
processes: allocator counters are per process.

Built from the probe's records only (``allocscope.this_process``): the allocator, FIPS and runtime
are detected once per pid, a forked worker detects again; each scrape reads memory from
``/proc/self/status`` and the allocator's counters (``allocscope.probe.held``: what it
holds resident, in use and free, for glibc, jemalloc and tcmalloc; jemalloc ``stats.*``,
glibc ``mallinfo2``). ``collect()`` never raises: a part that cannot be read is left out of that
scrape and counted in ``allocscope_collector_errors_total{part}``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from allocscope import __version__, forksafe, this_process
from allocscope.expectations import FIPS_LEVELS
from allocscope.probe import glibc, held, memory, procfs

__all__ = ["AllocscopeCollector"]

PREFIX = "allocscope"
JEMALLOC_KINDS = ("allocated", "active", "resident", "mapped", "retained", "metadata")

Part = Callable[[this_process.ProcessFacts, str], Iterator[Metric]]


def _gauge(name: str, doc: str, value: float, pid: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["pid"])
    family.add_metric([pid], value)
    return family


class AllocscopeCollector(Collector):
    """The allocator, FIPS, memory and fork-safety series of the process that is scraped.

    ``server`` labels ``allocscope_build_info``; by default the server this process
    imported (gunicorn, uvicorn, granian, ...), or empty when there is none it knows.
    ``proc_root`` and ``current`` are for tests (a fake /proc tree, fake facts).
    """

    def __init__(
        self,
        *,
        server: str | None = None,
        proc_root: str = procfs.DEFAULT_ROOT,
        current: Callable[[], this_process.ProcessFacts] = this_process.current,
    ) -> None:
        self._server = server
        self._proc_root = proc_root
        self._current = current
        self._errors: Counter[str] = Counter()
        self._errors_pid = -1
        self._parts: tuple[tuple[str, Part], ...] = (
            ("info", self._info),
            ("checks", self._checks),
            ("memory", self._memory),
            ("allocator", self._allocator),
            ("background_thread", self._background_thread),
        )

    def describe(self) -> list[Metric]:
        return []  # nothing detected at registration: a registry's auto_describe stays cheap

    def collect(self) -> Iterator[Metric]:
        if os.getpid() != self._errors_pid:  # a forked child counts its own errors
            self._errors, self._errors_pid = Counter(), os.getpid()
        pid = str(self._errors_pid)
        families: list[Metric] = []
        try:
            f = self._current()
        except Exception:
            self._errors["facts"] += 1
        else:
            for name, part in self._parts:
                try:
                    families += list(part(f, pid))  # all of a part, or none of it
                except Exception:
                    self._errors[name] += 1
        yield from families
        yield self._errors_family(pid)

    def _errors_family(self, pid: str) -> CounterMetricFamily:
        family = CounterMetricFamily(
            f"{PREFIX}_collector_errors",
            "Scrapes in which a part of allocscope's series could not be read (left out)",
            labels=["pid", "part"],
        )
        for part in ("facts", *(name for name, _ in self._parts), "held"):
            family.add_metric([pid, part], self._errors[part])
        return family

    def _info(self, f: this_process.ProcessFacts, pid: str) -> Iterator[Metric]:
        ossl = f.fips.openssl
        build = InfoMetricFamily(f"{PREFIX}_build", "allocscope, Python, server and OpenSSL")
        server = this_process.server() if self._server is None else self._server
        build.add_metric(
            [],
            {
                "pid": pid,
                "version": __version__,
                "python": f.runtime.python_version,
                "implementation": f.runtime.implementation,
                "server": server,
                "openssl": ossl.version if ossl else "",
            },
        )
        yield build
        a = f.allocator
        info = InfoMetricFamily(f"{PREFIX}_allocator", "The allocator that serves malloc")
        info.add_metric(
            [],
            {
                "pid": pid,
                "name": a.name,
                "version": a.version or "",
                "path": a.path or "",
                "source": a.source,
                "malloc_conf": a.declared.malloc_conf or "",
            },
        )
        yield info
        state = GaugeMetricFamily(
            f"{PREFIX}_fips_state",
            "FIPS state detected at start-up: 1 for the state in force, 0 for the others",
            labels=["pid", "state"],
        )
        for level in FIPS_LEVELS:
            state.add_metric([pid, level], 1.0 if f.fips.state == level else 0.0)
        yield state
        yield _gauge(
            "worker_start_time_seconds", "When this process was first probed", f.started, pid
        )

    def _checks(self, f: this_process.ProcessFacts, pid: str) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            f"{PREFIX}_check_passed",
            "1 when the check passes, 0 when it fails (ALLOCSCOPE_EXPECT_*, as verify judges)",
            labels=["pid", "check"],
        )
        for c in f.checks():
            family.add_metric([pid, c.name], 1.0 if c.passed else 0.0)
        yield family

    def _memory(self, f: this_process.ProcessFacts, pid: str) -> Iterator[Metric]:
        mem = memory.read(self._proc_root, rollup=False)
        yield _gauge("process_resident_memory_bytes", "RSS", mem.rss_bytes, pid)
        yield _gauge(
            "process_peak_resident_memory_bytes", "Peak RSS (VmHWM)", mem.peak_rss_bytes, pid
        )
        if mem.anon_rss_bytes is not None:
            yield _gauge("process_anonymous_memory_bytes", "Anonymous RSS", mem.anon_rss_bytes, pid)

    def _allocator(self, f: this_process.ProcessFacts, pid: str) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            f"{PREFIX}_allocator_bytes",
            "The allocator's byte counters, by kind: in_use, free_resident (kept resident, "
            "not in use), returnable (what a trim/purge returns) and held (in_use + "
            "free_resident), the same for every allocator (allocscope.probe.held); and the "
            "allocator's own books (jemalloc stats.*, glibc mallinfo2)",
            labels=["pid", "allocator", "kind"],
        )
        name = f.allocator.name
        s = f.jemalloc.stats() if f.jemalloc is not None else None
        g = glibc.heap() if s is None and name == "glibc" else None
        try:  # arena pages and anonymous RSS: left out alone when unreadable, the books stay
            h: held.Held | None = held.read(f.allocator, self._proc_root, heap=g, stats=s)
        except Exception:
            self._errors["held"] += 1
            h = None
        for kind, value in (
            ("in_use", h.in_use_bytes if h else None),
            ("free_resident", h.free_bytes if h else None),
            ("returnable", h.releasable_bytes if h else None),
            ("held", h.held_bytes if h else None),
        ):
            if value is not None:
                family.add_metric([pid, name, kind], value)
        if s is not None:
            for kind in JEMALLOC_KINDS:
                family.add_metric([pid, "jemalloc", kind], getattr(s, kind))
            yield family
            yield _gauge("jemalloc_arenas", "jemalloc arenas", s.narenas, pid)
        elif g is not None:
            for kind, value in (  # mallinfo2's books: "free" counts trimmed pages too
                ("arena", g.arena_bytes),
                ("free", g.free_bytes),
                ("mmap", g.mmap_bytes),
                ("releasable", g.releasable_bytes),
            ):
                family.add_metric([pid, "glibc", kind], value)
            yield family
            if g.arenas is not None:
                yield _gauge("glibc_arenas", "glibc malloc arenas", g.arenas, pid)
        elif family.samples:
            yield family

    def _background_thread(self, f: this_process.ProcessFacts, pid: str) -> Iterator[Metric]:
        if f.jemalloc is None:
            return
        bt = forksafe.background_thread()
        if bt is None:
            return
        yield _gauge(
            "jemalloc_background_thread_requested",
            "1 when opt.background_thread asks for jemalloc's purging thread",
            1.0 if bt.requested else 0.0,
            pid,
        )
        yield _gauge(
            "jemalloc_background_thread",
            "1 when jemalloc's purging thread runs in this process (fork() stops it)",
            1.0 if bt.live else 0.0,
            pid,
        )
        restores = CounterMetricFamily(
            f"{PREFIX}_jemalloc_background_thread_restores",
            "Times allocscope.forksafe turned the purging thread back on in this process",
            labels=["pid"],
        )
        restores.add_metric([pid], bt.restores)
        yield restores
