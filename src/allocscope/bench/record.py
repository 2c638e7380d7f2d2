"""One typed record of a run, from the child's pipe to the results file and the report.

The worker child writes its :class:`Proof` in the ``ready`` event together with
:data:`PROTOCOL`; the runner checks the protocol and reads the proof back with
:meth:`Proof.from_dict`; the runner builds a :class:`RunRecord`; ``results.json`` stores
``RunRecord.to_dict()``; the report reads it back with :meth:`RunRecord.from_dict`. Every
reader goes through these classes, so a field cannot silently change meaning between the
writer and the reader: a wrong type or an impossible value (a negative RSS, a NaN time) is
a :class:`RecordError`, never a number in a table.

A record on its own (outside a results file) is ``RunRecord.to_json()``:
``{"schema": "allocscope.run", "version": RECORD_VERSION, ...the fields...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from allocscope.bench.checked import RecordError as RecordError  # the error of every record
from allocscope.bench.checked import boolean, items, mapping, present, text, texts, whole
from allocscope.bench.checked import number as number
from allocscope.bench.evidence import Evidence, LoadSummary
from allocscope.expectations import Check

PROTOCOL = 2  # the worker <-> runner event protocol (1: untyped proof, never checked)
RECORD_SCHEMA = "allocscope.run"
RECORD_VERSION = 3  # the same number as the results file that first carried it

# What produced a run: a built-in workload in a worker child, a user's command (any
# language, its whole process tree), or a user's service under load.
KINDS: tuple[str, ...] = ("workload", "command", "service")


# --- the proof -----------------------------------------------------------------------


def _check(doc: Any, what: str) -> Check:
    d = mapping(doc, what)
    return Check(
        name=text(d, "name", what),
        passed=boolean(d, "passed", what),
        detail=str(d.get("detail", "")),
    )


@dataclass(frozen=True)
class Proof:
    """What a child (or a workload's server) really runs on, and the checks it passed."""

    allocator: str | None  # the allocator that serves malloc, as the probe found it
    version: str | None = None
    path: str | None = None
    source: str | None = None  # LD_PRELOAD, linked, ...
    confirmed_by: str | None = None
    python_allocator: str | None = None
    declared: dict[str, str | None] = field(default_factory=dict)  # LD_PRELOAD, ...
    warnings: tuple[str, ...] = ()
    jemalloc_options: dict[str, Any] | None = None
    malloc_conf: list[dict[str, Any]] | None = None  # ConfKey per MALLOC_CONF key
    checks: tuple[Check, ...] = ()
    ok: bool = False  # every check passed
    server: Proof | None = None  # a workload's own server proves itself too
    worker_pid: int | None = None  # the server's worker process
    migrated: bool = False  # read from demo output: only name and version are known
    tree: bool = False  # a command's or service's: one check per process of its tree

    @property
    def detected(self) -> str:
        """'jemalloc 5.3.0'."""
        return f"{self.allocator} {self.version}" if self.version else str(self.allocator)

    def problems(self, expect: str) -> list[str]:
        """Why this proof does not prove ``expect`` (empty: it does)."""
        out = [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]
        # A tree's checks name each process (the root included); a child's proof may lack
        # the allocator check (older files): its allocator is judged here.
        told = self.tree or any(c.name == "allocator" for c in self.checks)
        if self.allocator != expect and not told:
            out.append(f"expected {expect}, the child runs on {self.allocator}")
        if not self.ok and not out and not self.migrated:
            out.append("the proof says it failed")
        if self.server is not None and self.server.allocator != expect:
            out.append(f"expected {expect}, the server runs on {self.server.allocator}")
        return out

    def with_server(self, server: Proof) -> Proof:
        checks = self.checks + server.checks
        return replace(self, server=server, checks=checks, ok=all(c.passed for c in checks))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any, what: str = "proof") -> Proof:
        d = mapping(doc, what)
        declared = mapping(d.get("declared") or {}, f"{what}.declared")
        options = d.get("jemalloc_options")
        conf = d.get("malloc_conf")
        server = d.get("server")
        checks = tuple(_check(c, f"{what}.checks[]") for c in items(d, "checks", what))
        return cls(
            allocator=text(d, "allocator", what, optional=True),
            version=text(d, "version", what, optional=True),
            path=text(d, "path", what, optional=True),
            source=text(d, "source", what, optional=True),
            confirmed_by=text(d, "confirmed_by", what, optional=True),
            python_allocator=text(d, "python_allocator", what, optional=True),
            declared={str(k): None if v is None else str(v) for k, v in declared.items()},
            warnings=tuple(str(w) for w in items(d, "warnings", what)),
            jemalloc_options=dict(mapping(options, f"{what}.jemalloc_options"))
            if options is not None
            else None,
            malloc_conf=[dict(mapping(k, f"{what}.malloc_conf[]")) for k in conf]
            if isinstance(conf, list | tuple)
            else None,
            checks=checks,
            ok=boolean(d, "ok", what, default=all(c.passed for c in checks)),
            server=cls.from_dict(server, f"{what}.server") if server is not None else None,
            worker_pid=whole(d.get("worker_pid"), f"{what}.worker_pid", optional=True),
            migrated=boolean(d, "migrated", what, default=False),
            tree=boolean(d, "tree", what, default=False),
        )


# --- noise ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Noise:
    """What else the machine did while a run (or a session) measured."""

    load1: float  # 1-minute load average at the start (it includes our own children)
    steal: float  # fraction of CPU time stolen by the hypervisor (/proc/stat)
    other_cpu: float  # CPUs' worth of time used by processes not ours (0.5: half a CPU)
    busy: tuple[str, ...] = ()  # other processes that used a quarter CPU or more
    marked: bool = False  # busy enough that this run's times are suspect

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "busy": list(self.busy)}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "noise") -> Noise:
        d = mapping(doc, what)
        return cls(
            load1=number(d.get("load1"), f"{what}.load1") or 0.0,
            steal=number(d.get("steal"), f"{what}.steal") or 0.0,
            other_cpu=number(d.get("other_cpu"), f"{what}.other_cpu") or 0.0,
            busy=tuple(str(b) for b in items(d, "busy", what)),
            marked=boolean(d, "marked", what, default=False),
        )


# --- the run -------------------------------------------------------------------------


_INFO_SECONDS = ("work_s", "cpu_s", "free_s", "after_s", "server_cpu_s", "took_s")


@dataclass(frozen=True)
class MarkInfo:
    """What a mark says besides the time and the RSS; each field belongs to some events."""

    work_s: float | None = None  # work_end: wall time of the work
    cpu_s: float | None = None  # work_end: CPU time of the work
    free_s: float | None = None  # freed: time to drop what the work kept
    after_s: float | None = None  # settle: seconds after the work (a service: its load)
    server_cpu_s: float | None = None  # work_start, work_end: a workload's server's CPU
    took_s: float | None = None  # stop: how long stopping took
    pid: int | None = None  # ready: the child
    measured_pid: int | None = None  # ready: the process measured (a workload's server)
    pss: int | None = None  # a process tree's PSS at the mark
    argv: tuple[str, ...] | None = None  # start: the command as started
    how: str | None = None  # purged: what the purge did; stop: exited, SIGTERM, SIGKILL
    load: LoadSummary | None = None  # load_end: the load's figures (flat in the JSON)

    def to_dict(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "load"}
        if self.argv is not None:
            doc["argv"] = list(self.argv)
        return present({**doc, **(self.load.to_dict() if self.load else {})})

    @classmethod
    def from_dict(cls, doc: Any, what: str = "info", event: str = "") -> MarkInfo:
        d = mapping(doc, what)
        seconds = {k: number(d.get(k), f"{what}.{k}", optional=True) for k in _INFO_SECONDS}
        return cls(
            **seconds,
            pid=whole(d.get("pid"), f"{what}.pid", optional=True),
            measured_pid=whole(d.get("measured_pid"), f"{what}.measured_pid", optional=True),
            pss=whole(d.get("pss"), f"{what}.pss", optional=True),
            argv=texts(d, "argv", what) if d.get("argv") is not None else None,
            how=text(d, "how", what, optional=True),
            load=LoadSummary.from_dict(d, what) if event == "load_end" else None,
        )


@dataclass(frozen=True)
class Mark:
    """A phase boundary, with the child's RSS and peak read from outside at that moment."""

    event: str  # ready, work_start, work_end, freed, settle, purged; a tree's: start, ...
    t: float  # seconds since the child was started
    rss: int | None
    hwm: int | None
    info: MarkInfo = field(default_factory=MarkInfo)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "t": self.t,
            "rss": self.rss,
            "hwm": self.hwm,
            "info": self.info.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "mark") -> Mark:
        d = mapping(doc, what)
        event = text(d, "event", what)
        return cls(
            event=event,
            t=number(d.get("t"), f"{what}.t") or 0.0,
            rss=whole(d.get("rss"), f"{what}.rss", optional=True),
            hwm=whole(d.get("hwm"), f"{what}.hwm", optional=True),
            info=MarkInfo.from_dict(d.get("info") or {}, f"{what}.info", event),
        )

    def __post_init__(self) -> None:
        for key in ("rss", "hwm"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise RecordError(f"mark {self.event}.{key}: impossible value {value}")


@dataclass(frozen=True)
class RunRecord:
    """One run: where it ran, whether it proved itself, its figures and its evidence."""

    variant: str
    workload: str
    repeat: int  # 1..N; 0 is a warm-up and never counts
    ok: bool
    failures: list[str]
    metrics: dict[str, float]  # see results.METRICS; only for runs that count
    marks: list[Mark]
    timeline: list[tuple[float, int]]  # (seconds since start, RSS bytes)
    proof: Proof | None
    heap: dict[str, Any] | None
    exit_code: int | None
    stderr: str
    duration_s: float
    params: dict[str, Any]
    kind: str = "workload"  # see KINDS
    order: int = 0  # position within its repeat (variants are shuffled per repeat)
    noise: Noise | None = None
    # command and service runs: the process tree (totals and per process), the load's
    # figures, growth slopes with their errors, trims; None for built-in workloads.
    evidence: Evidence | None = None

    def __post_init__(self) -> None:
        for key, value in self.metrics.items():
            number(value, f"run {self.variant}/{self.workload}: metric {key}")
        for t, rss in self.timeline:
            if not (math.isfinite(t) and t >= 0 and rss >= 0):
                raise RecordError(f"run {self.variant}: impossible timeline point ({t}, {rss})")
        if self.repeat < 0:
            raise RecordError(f"run {self.variant}: impossible repeat {self.repeat}")

    @property
    def counts(self) -> bool:
        return self.ok and self.repeat > 0

    @property
    def detected(self) -> str | None:
        """'jemalloc 5.3.0', as the child proved it."""
        return self.proof.detected if self.proof else None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(replace(self, evidence=None, marks=[]))
        doc["marks"] = [m.to_dict() for m in self.marks]
        doc["evidence"] = self.evidence.to_dict() if self.evidence else None
        return doc

    def to_json(self) -> str:
        doc = {"schema": RECORD_SCHEMA, "version": RECORD_VERSION, **self.to_dict()}
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise RecordError(f"a run record that is not JSON: {e}") from None
        d = mapping(doc, "run record")
        if d.get("schema") != RECORD_SCHEMA or d.get("version") != RECORD_VERSION:
            raise RecordError(
                f"run record schema {d.get('schema')!r} version {d.get('version')!r}: "
                f"this allocscope reads {RECORD_SCHEMA!r} version {RECORD_VERSION}"
            )
        return cls.from_dict({k: v for k, v in d.items() if k not in ("schema", "version")})

    @classmethod
    def from_dict(cls, doc: Any, what: str = "run") -> RunRecord:
        d = mapping(doc, what)
        variant = text(d, "variant", what)
        what = f"run {variant}"
        metrics = mapping(d.get("metrics") or {}, f"{what}.metrics")
        timeline = []
        for point in items(d, "timeline", what):
            if not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 2:
                raise RecordError(f"{what}.timeline: expected [seconds, bytes] pairs")
            t = number(point[0], f"{what}.timeline") or 0.0
            rss = whole(point[1], f"{what}.timeline") or 0
            if rss < 0:
                raise RecordError(f"{what}.timeline: impossible RSS {rss}")
            timeline.append((t, rss))
        proof, noise, heap = d.get("proof"), d.get("noise"), d.get("heap")
        kind = d.get("kind", "workload")
        if kind not in KINDS:
            raise RecordError(f"{what}: unknown run kind {kind!r} (known: {', '.join(KINDS)})")
        return cls(
            variant=variant,
            workload=text(d, "workload", what),
            repeat=whole(d.get("repeat"), f"{what}.repeat") or 0,
            ok=boolean(d, "ok", what),
            failures=[str(f) for f in items(d, "failures", what)],
            metrics={str(k): number(v, f"{what}.metrics.{k}") or 0.0 for k, v in metrics.items()},
            marks=[Mark.from_dict(m, f"{what}.marks[]") for m in items(d, "marks", what)],
            timeline=timeline,
            proof=Proof.from_dict(proof, f"{what}.proof") if proof is not None else None,
            heap=dict(mapping(heap, f"{what}.heap")) if heap is not None else None,
            exit_code=whole(d.get("exit_code"), f"{what}.exit_code", optional=True),
            stderr=str(d.get("stderr", "")),
            duration_s=number(d.get("duration_s", 0.0), f"{what}.duration_s") or 0.0,
            params=dict(mapping(d.get("params") or {}, f"{what}.params")),
            kind=kind,
            order=whole(d.get("order", 0), f"{what}.order") or 0,
            noise=Noise.from_dict(noise, f"{what}.noise") if noise is not None else None,
            evidence=Evidence.from_dict(d["evidence"], f"{what}.evidence")
            if d.get("evidence")
            else None,
        )
