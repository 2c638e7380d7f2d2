"""Prometheus metrics of one worker process, as a prometheus_client collector.

Every series carries a ``pid`` label: with ``WEB_CONCURRENCY`` > 1 each scrape reaches one
worker, and its series are that worker's. Nothing is aggregated across workers (the
allocator's counters are per process and cannot be summed meaningfully in the server);
aggregate in PromQL, e.g. ``max by (pid) (...)`` over a window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from allocscope import __version__
from allocscope.expectations import FIPS_LEVELS
from allocscope.probe import glibc, memory
from allocscope.probe.errors import ProbeError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from allocscope.service.app import Worker

PREFIX = "allocscope"


def _gauge(name: str, doc: str, value: float, pid: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["pid"])
    family.add_metric([pid], value)
    return family


class ServiceCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pid = str(worker.pid)
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        w, pid = self.worker, self.pid
        yield self._build_info()
        a = w.allocator
        info = InfoMetricFamily(
            f"{PREFIX}_allocator", "The allocator that serves malloc in this worker"
        )
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
            state.add_metric([pid, level], 1.0 if w.fips.state == level else 0.0)
        yield state
        yield _gauge("worker_start_time_seconds", "When this worker started", self.started, pid)
        yield from self._memory()
        yield from self._allocator_bytes()

    def _build_info(self) -> InfoMetricFamily:
        r, ossl = self.worker.runtime, self.worker.fips.openssl
        build = InfoMetricFamily(f"{PREFIX}_build", "allocscope, Python, server and OpenSSL")
        build.add_metric(
            [],
            {
                "pid": self.pid,
                "version": __version__,
                "python": r.python_version,
                "implementation": r.implementation,
                "server": self.worker.server,
                "openssl": ossl.version if ossl else "",
            },
        )
        return build

    def _memory(self) -> Iterator[Metric]:
        try:
            mem = memory.read(rollup=False)
        except ProbeError:
            return
        yield _gauge("process_resident_memory_bytes", "RSS", mem.rss_bytes, self.pid)
        yield _gauge(
            "process_peak_resident_memory_bytes", "Peak RSS (VmHWM)", mem.peak_rss_bytes, self.pid
        )
        if mem.anon_rss_bytes is not None:
            yield _gauge(
                "process_anonymous_memory_bytes", "Anonymous RSS", mem.anon_rss_bytes, self.pid
            )

    def _allocator_bytes(self) -> Iterator[Metric]:
        w, pid = self.worker, self.pid
        family = GaugeMetricFamily(
            f"{PREFIX}_allocator_bytes",
            "The allocator's own byte counters, by kind (jemalloc stats.*, glibc mallinfo2)",
            labels=["pid", "allocator", "kind"],
        )
        if w.jemalloc is not None:
            s = w.jemalloc.stats()
            for kind in ("allocated", "active", "resident", "mapped", "retained", "metadata"):
                family.add_metric([pid, "jemalloc", kind], getattr(s, kind))
            yield family
            yield _gauge("jemalloc_arenas", "jemalloc arenas", s.narenas, pid)
            yield _gauge(
                "jemalloc_background_thread",
                "1 when jemalloc's background purging thread runs in this worker",
                1.0 if s.background_thread else 0.0,
                pid,
            )
        elif w.allocator.name == "glibc":
            h = glibc.heap()
            for kind, value in (
                ("arena", h.arena_bytes),
                ("in_use", h.in_use_bytes),
                ("free", h.free_bytes),
                ("mmap", h.mmap_bytes),
                ("releasable", h.releasable_bytes),
            ):
                family.add_metric([pid, "glibc", kind], value)
            yield family
            if h.arenas is not None:
                yield _gauge("glibc_arenas", "glibc malloc arenas", h.arenas, pid)
