"""The fleet audit: the agents' series, grouped by workload, and what each finding asks.

Processes in a pod are grouped by namespace and workload (the pod's owner, derived by the
agent from the pod's name); the others by node and command. pids churn, so every query
is an instant one (plus one range function for growth), keyed by the agent (node) and pid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from allocscope import exitcodes
from allocscope.errors import AllocscopeError, UsageError
from allocscope.fleet.prometheus import Prometheus, Sample

FINDINGS = ("allocator", "background-thread", "two-allocators", "fips", "growth", "fragmentation")
FRAGMENTATION_MIN_BYTES = 64 * 2**20  # below this, a high share of a small heap is no news


@dataclass(frozen=True)
class Expectations:
    allocator: str | None = None  # jemalloc, tcmalloc, mimalloc, glibc
    fips: bool = False  # --expect-fips enforced: libcrypto must come with the FIPS provider
    window: str = "1h"  # PromQL range for growth
    growth_ratio: float = 0.2  # RSS grown by more than this share over the window
    fragmentation_ratio: float = 0.5  # the glibc estimate above which to say so


@dataclass(frozen=True)
class Finding:
    kind: str  # one of FINDINGS
    pids: tuple[str, ...]  # node/pid
    says: str
    do: str


@dataclass
class Process:
    node: str
    pid: str
    command: str
    namespace: str
    pod: str
    container: str
    workload: str
    allocator: str = "unknown"
    version: str = ""
    conflict: bool = False
    background_threads: int | None = None
    libcrypto: bool = False
    fips_provider: bool = False
    rss_bytes: float = 0.0
    growth_bytes: float | None = None
    heap_resident_bytes: float = 0.0
    fragmentation: float | None = None

    @property
    def ref(self) -> str:
        return f"{self.node}/{self.pid}"


@dataclass
class Workload:
    kind: str  # "kubernetes" or "host"
    where: str  # the namespace, or the node for a host process
    name: str  # the workload, or the command
    processes: list[Process] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def pods(self) -> list[str]:
        return sorted({p.pod for p in self.processes if p.pod})

    def allocators(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for p in self.processes:
            label = f"{p.allocator} {p.version}".strip()
            found[label] = found.get(label, 0) + 1
        return dict(sorted(found.items()))

    @property
    def rss_bytes(self) -> float:
        return sum(p.rss_bytes for p in self.processes)

    @property
    def growth_bytes(self) -> float | None:
        grown = [p.growth_bytes for p in self.processes if p.growth_bytes is not None]
        return sum(grown) if grown else None

    @property
    def fragmentation(self) -> float | None:
        found = [p.fragmentation for p in self.processes if p.fragmentation is not None]
        return max(found) if found else None


@dataclass(frozen=True)
class Audit:
    prometheus: str
    namespace: str | None
    expect: Expectations
    nodes: tuple[str, ...]
    workloads: tuple[Workload, ...]

    def findings(self) -> list[tuple[Workload, Finding]]:
        return [(w, f) for w in self.workloads for f in w.findings]


def _selector(namespace: str | None, extra: str = "") -> str:
    parts = [f'namespace="{_escape(namespace)}"'] if namespace is not None else []
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_WINDOW = re.compile(r"^[1-9][0-9]*[smhdw]$")


# Per-process facts after the allocator: (PromQL, with {sel}, {rss} and {window} to fill;
# the Process field it sets; how the sample's value becomes it).
_FACTS: tuple[tuple[str, str, Callable[[float], object]], ...] = (
    ("allocscope_process_allocator_conflict{sel}", "conflict", lambda v: v == 1),
    ("allocscope_process_jemalloc_background_threads{sel}", "background_threads", int),
    ("allocscope_process_libcrypto_mapped{sel}", "libcrypto", lambda v: v == 1),
    ("allocscope_process_fips_provider_mapped{sel}", "fips_provider", lambda v: v == 1),
    ("allocscope_process_memory_bytes{rss}", "rss_bytes", float),
    ("delta(allocscope_process_memory_bytes{rss}[{window}])", "growth_bytes", float),
    ("sum without (heap) (allocscope_process_glibc_heap_resident_bytes{sel})",
     "heap_resident_bytes", float),
    ("allocscope_process_glibc_fragmentation_estimate_ratio{sel}", "fragmentation", float),
)  # fmt: skip


def audit(prom: Prometheus, namespace: str | None, expect: Expectations) -> Audit:
    """Every agent's processes (those with an allocator series), judged by workload."""
    if not _WINDOW.match(expect.window):
        raise UsageError(
            f"--window: not a Prometheus duration like 30m, 1h or 7d: {expect.window!r}"
        )
    nodes = {s.labels.get("instance", ""): s.labels.get("node", "") for s in
             prom.query("allocscope_agent_info")}  # fmt: skip
    sel = _selector(namespace)
    processes: dict[tuple[str, str], Process] = {}
    for s in prom.query(f"allocscope_process_allocator_info{sel}"):
        get = s.labels.get
        processes[_key(s)] = Process(
            node=nodes.get(get("instance", "")) or get("instance", ""),
            pid=get("pid", ""),
            command=get("command", ""),
            namespace=get("namespace", ""),
            pod=get("pod", ""),
            container=get("container", ""),
            workload=get("workload", ""),
            allocator=get("allocator", "unknown"),
            version=get("version", ""),
        )
    if not processes:
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        raise AllocscopeError(
            f"Prometheus at {prom.url} holds no allocscope_process_allocator_info series{where}:"
            " is it scraping the allocscope agents (deploy/agent/)?",
            exitcodes.NO_SERIES,
        )
    fill = {"sel": sel, "rss": _selector(namespace, 'kind="rss"'), "window": expect.window}
    for template, field_name, convert in _FACTS:
        for s in prom.query(template.format(**fill)):
            p = processes.get(_key(s))  # one that began since the first query is left out
            if p is not None:
                setattr(p, field_name, convert(s.value))
    groups: dict[tuple[str, str, str], Workload] = {}
    for key in sorted(processes, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0)):
        p = processes[key]
        group = (
            ("kubernetes", p.namespace, p.workload or p.pod)
            if p.namespace
            else ("host", p.node, p.command)
        )
        groups.setdefault(group, Workload(*group)).processes.append(p)
    workloads = tuple(
        sorted(groups.values(), key=lambda w: (w.kind != "kubernetes", w.where, w.name))
    )
    for w in workloads:
        w.findings = judge(w, expect)
    return Audit(prom.url, namespace, expect, tuple(sorted(set(nodes.values()) - {""})), workloads)


def _key(s: Sample) -> tuple[str, str]:
    """A process across queries: its agent (the scrape target) and its pid there."""
    return s.labels.get("instance", ""), s.labels.get("pid", "")


def _refs(processes: list[Process]) -> tuple[str, ...]:
    return tuple(p.ref for p in processes)


def _count(processes: list[Process], verb: str) -> str:
    """'2 pods run', '1 process runs': pods when the processes are in pods."""
    pods = {p.pod for p in processes if p.pod}
    n = len(pods) if pods else len(processes)
    noun = ("pod" if n == 1 else "pods") if pods else ("process" if n == 1 else "processes")
    verbs = {"run": "runs", "have": "has", "map": "maps", "hold": "holds"}
    return f"{n} {noun} {verbs[verb] if n == 1 else verb}"


def judge(w: Workload, expect: Expectations) -> list[Finding]:
    """What is wrong with the workload, each with what to do about it."""
    found: list[Finding] = []
    ps = w.processes
    if expect.allocator is not None:
        off = [p for p in ps if p.allocator != expect.allocator]
        if off:
            runs = ", ".join(sorted({p.allocator for p in off}))
            found.append(Finding(
                "allocator", _refs(off),
                f"{_count(off, 'run')} {runs}, not {expect.allocator}",
                f"preload {expect.allocator} in the image (LD_PRELOAD=<its .so>; allocscope's "
                "image does this for jemalloc) and check with `allocscope inspect PID`",
            ))  # fmt: skip
    both = [p for p in ps if p.conflict]
    if both:
        found.append(Finding(
            "two-allocators", _refs(both),
            f"{_count(both, 'have')} two allocators mapped that both define malloc",
            "keep one: remove the other from LD_PRELOAD, /etc/ld.so.preload or the link line; "
            "`allocscope inspect PID` names both",
        ))  # fmt: skip
    idle = [p for p in ps if p.allocator == "jemalloc" and p.background_threads == 0]
    if idle:
        found.append(Finding(
            "background-thread", _refs(idle),
            f"{_count(idle, 'run')} jemalloc without its background thread (freed memory waits "
            "for the next allocation to be purged)",
            "set MALLOC_CONF=background_thread:true; under gunicorn add "
            "`-c python:allocscope.gunicorn_conf` (the thread does not survive fork)",
        ))  # fmt: skip
    if expect.fips:
        plain = [p for p in ps if p.libcrypto and not p.fips_provider]
        if plain:
            found.append(Finding(
                "fips", _refs(plain),
                f"{_count(plain, 'map')} libcrypto without OpenSSL's FIPS provider",
                "load the FIPS provider (OPENSSL_CONF with fips activated and default_properties "
                "fips=yes) and gate start-up on it: ALLOCSCOPE_EXPECT_FIPS=enforced",
            ))  # fmt: skip
    grown = w.growth_bytes
    base = w.rss_bytes - (grown or 0)
    if grown is not None and base > 0 and grown / base > expect.growth_ratio:
        growing = [p for p in ps if (p.growth_bytes or 0) > 0]
        found.append(Finding(
            "growth", _refs(growing),
            f"RSS grew {grown / 2**20:+.0f} MiB ({grown / base:+.0%}) over {expect.window}",
            "compare allocators on this service (`allocscope compare --serve ...`) or look "
            "inside one process: `allocscope inspect --attach PID`",
        ))  # fmt: skip
    heavy = [
        p for p in ps
        if p.allocator == "glibc" and p.fragmentation is not None
        and p.fragmentation > expect.fragmentation_ratio
        and p.heap_resident_bytes >= FRAGMENTATION_MIN_BYTES
    ]  # fmt: skip
    if heavy:
        worst = max(p.fragmentation or 0 for p in heavy)
        found.append(Finding(
            "fragmentation", _refs(heavy),
            f"{_count(heavy, 'hold')} up to {worst:.0%} of their anonymous memory in glibc's heaps "
            "(an estimate from outside: the most that could be free)",
            "measure with `allocscope inspect --attach PID` (mallinfo2), then try "
            "MALLOC_ARENA_MAX=2 or jemalloc",
        ))  # fmt: skip
    return found


def parse_fail_on(text: str) -> frozenset[str]:
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    if "any" in kinds:
        return frozenset(FINDINGS)
    unknown = kinds - set(FINDINGS)
    if unknown or not kinds:
        raise UsageError(
            f"--fail-on: unknown finding {', '.join(sorted(unknown)) or '(none given)'}; "
            f"choose from any, {', '.join(FINDINGS)}"
        )
    return frozenset(kinds)
