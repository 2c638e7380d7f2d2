"""The node's processes as Prometheus metrics: the agent's collector.

A scrape reads every process's RSS from /proc/PID/statm (cheap), keeps the top N, and
inspects only those (maps, environ, ELF symbols; identities are cached per file), so
its cost and the series' cardinality stay bounded. prometheus_client is imported here
only: the rest of inspect needs nothing beyond the standard library.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from allocscope import __version__
from allocscope.inspect.errors import InspectError
from allocscope.inspect.kube import PodLogs
from allocscope.inspect.procinfo import all_pids
from allocscope.inspect.report import ProcessReport, inspect_process

_PAGE = os.sysconf("SC_PAGE_SIZE")
# On every series: the process, and the pod it belongs to ("" off Kubernetes). pid and
# container_id churn as processes come and go: query by namespace/workload/pod (see
# docs/how-to/fleet.md), never by pid across time. pod_uid, QoS and runtime are on
# allocscope_process_kubernetes_info only.
LABELS = ("pid", "command", "container_id", "namespace", "pod", "container", "workload")
MALLOC_VARIABLES = ("MALLOC_CONF", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")


def rss_by_pid(proc_root: str = "/proc") -> dict[int, int]:
    """Resident bytes of every user process (kernel threads have 0 and are left out).

    Raw os.open/os.read: on a node of a thousand processes this runs a thousand times per
    scrape, and a text file object costs twice as much."""
    found = {}
    for pid in all_pids(proc_root):
        try:
            fd = os.open(f"{proc_root}/{pid}/statm", os.O_RDONLY)
            try:
                resident = int(os.read(fd, 256).split()[1]) * _PAGE
            finally:
                os.close(fd)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if resident:
            found[pid] = resident
    return found


@dataclass(eq=False)  # registries key collectors by identity
class NodeCollector(Collector):
    top: int = 50
    proc_root: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    pod_logs: str | None = None  # the node's /var/log (the kubelet's pods/, containers/)
    node: str = ""

    def reports(self) -> tuple[list[ProcessReport], int]:
        """Reports of the top processes by RSS, and how many processes were seen."""
        rss = rss_by_pid(self.proc_root)
        chosen = sorted(rss, key=lambda p: rss[p], reverse=True)[: self.top]
        logs = PodLogs.read(self.pod_logs)  # once per scrape: one listdir per pod
        reports = []
        for pid in chosen:
            try:
                reports.append(inspect_process(pid, self.proc_root, self.cgroup_root, logs))
            except InspectError:
                continue  # exited since, or a zombie now
        return reports, len(rss)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        reports, seen = self.reports()
        info = InfoMetricFamily(
            "allocscope_process_allocator",
            "the allocator serving malloc in the process (by its symbols)",
            labels=LABELS,
        )
        conflict = GaugeMetricFamily(
            "allocscope_process_allocator_conflict",
            "1 when two allocators are mapped at once in the process (a failure)",
            labels=LABELS,
        )
        mem = GaugeMetricFamily(
            "allocscope_process_memory_bytes", "process memory by kind", labels=(*LABELS, "kind")
        )
        heaps = GaugeMetricFamily(
            "allocscope_process_glibc_arena_heaps",
            "glibc arena heaps (64 MiB-aligned) mapped, when glibc serves malloc",
            labels=LABELS,
        )
        heap_bytes = GaugeMetricFamily(
            "allocscope_process_glibc_heap_bytes",
            "glibc heap bytes mapped read-write, main ([heap]) and arenas",
            labels=(*LABELS, "heap"),
        )
        fips = GaugeMetricFamily(
            "allocscope_process_fips_provider_mapped",
            "1 when OpenSSL's FIPS provider (fips.so) is mapped into the process",
            labels=LABELS,
        )
        kubernetes = InfoMetricFamily(
            "allocscope_process_kubernetes",
            "the process's pod, from its cgroup path and the kubelet's log directories",
            labels=LABELS,
        )
        malloc_env = InfoMetricFamily(
            "allocscope_process_malloc_env",
            "an allocator variable the process was started with (as declared, maybe unused)",
            labels=LABELS,
        )
        background = GaugeMetricFamily(
            "allocscope_process_jemalloc_background_threads",
            "jemalloc background threads running (threads named jemalloc_bg_thd)",
            labels=LABELS,
        )
        libcrypto = GaugeMetricFamily(
            "allocscope_process_libcrypto_mapped",
            "1 when an OpenSSL libcrypto is mapped into the process",
            labels=LABELS,
        )
        openssl = InfoMetricFamily(
            "allocscope_process_openssl",
            "the libcrypto and FIPS provider mapped, and the OpenSSL config declared",
            labels=LABELS,
        )
        resident = GaugeMetricFamily(
            "allocscope_process_glibc_heap_resident_bytes",
            "glibc heap bytes resident (pagemap), main ([heap]) and arenas",
            labels=(*LABELS, "heap"),
        )
        fragmentation = GaugeMetricFamily(
            "allocscope_process_glibc_fragmentation_estimate_ratio",
            "ESTIMATE: glibc heaps' resident bytes over anonymous RSS, the most malloc could"
            " hold free (free and used chunks look alike from outside; --attach measures)",
            labels=LABELS,
        )
        unknown = GaugeMetricFamily(
            "allocscope_process_unknown_parts",
            "parts of the process that could not be read (permission, exited)",
            labels=LABELS,
        )
        for r in reports:
            box = r.container.container_id[:12] if r.container and r.container.container_id else ""
            k = r.kubernetes
            pod = [k.namespace, k.pod, k.container, k.workload] if k else ["", "", "", ""]
            labels = [str(r.pid), r.command, box, *pod]
            if k is not None:
                kubernetes.add_metric(labels, {"pod_uid": k.pod_uid, "qos": k.qos})
            if r.jemalloc_background_threads is not None:
                background.add_metric(labels, float(r.jemalloc_background_threads))
            a = r.allocator
            if a is not None:
                info.add_metric(
                    labels,
                    {"allocator": a.name, "version": a.version or "", "source": a.source},
                )
                conflict.add_metric(labels, 1.0 if a.conflict else 0.0)
                for variable, setting in a.declared.set_variables() if a.declared else ():
                    if variable in MALLOC_VARIABLES:
                        malloc_env.add_metric(labels, {"variable": variable, "value": setting})
            m = r.memory.process
            if m is not None:
                for kind, value in (
                    ("rss", m.rss_bytes), ("pss", m.pss_bytes), ("uss", m.uss_bytes),
                    ("anon", m.anon_rss_bytes), ("file", m.file_rss_bytes),
                    ("swap", m.swap_bytes), ("anon_huge_pages", m.anon_huge_pages_bytes),
                ):  # fmt: skip
                    if value is not None:
                        mem.add_metric([*labels, kind], float(value))
            g = r.memory.glibc
            if g is not None:
                heaps.add_metric(labels, float(g.arena_heaps))
                heap_bytes.add_metric([*labels, "main"], float(g.main_heap_bytes))
                heap_bytes.add_metric([*labels, "arenas"], float(g.arena_heap_bytes))
                if g.main_heap_resident_bytes is not None:
                    resident.add_metric([*labels, "main"], float(g.main_heap_resident_bytes))
                if g.arena_heap_resident_bytes is not None:
                    resident.add_metric([*labels, "arenas"], float(g.arena_heap_resident_bytes))
            estimate = r.memory.glibc_fragmentation_estimate
            if estimate is not None:
                fragmentation.add_metric(labels, estimate)
            c = r.crypto
            if c is not None:
                fips.add_metric(labels, 1.0 if c.fips_provider else 0.0)
                libcrypto.add_metric(labels, 1.0 if c.libcrypto else 0.0)
                openssl.add_metric(
                    labels,
                    {
                        "libcrypto": c.libcrypto or "",
                        "fips_provider": c.fips_provider or "",
                        "openssl_conf": c.openssl_conf or "",
                    },
                )
            unknown.add_metric(labels, float(len(r.unknowns)))
        yield from (info, conflict, mem, heaps, heap_bytes, fips, unknown, kubernetes)
        yield from (malloc_env, background, libcrypto, openssl, resident, fragmentation)
        agent = InfoMetricFamily("allocscope_agent", "the agent and the node it reads")
        agent.add_metric([], {"node": self.node or os.uname().nodename, "version": __version__})
        yield agent
        processes = GaugeMetricFamily(
            "allocscope_agent_processes", "processes seen and inspected", labels=("state",)
        )
        processes.add_metric(["seen"], float(seen))
        processes.add_metric(["inspected"], float(len(reports)))
        yield processes
        yield GaugeMetricFamily(
            "allocscope_agent_scrape_seconds",
            "time this scrape took to inspect the processes",
            value=time.perf_counter() - started,
        )
