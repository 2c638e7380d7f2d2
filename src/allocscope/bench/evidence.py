"""What a run of a user's command or service shows besides its figures, as typed records.

A command's or service's :class:`~allocscope.bench.record.RunRecord` carries one
:class:`Evidence`: the process tree it sampled (:class:`TreeTrace`, one
:class:`ProcessTrace` per process), each process's :class:`ProcessProof` read from outside,
what the hook saw inside Python processes (:class:`Inside`, its :class:`MallocConfKey`
judgements), the trims, the warnings the report repeats; a service adds its
:class:`LoadSummary`, its :class:`Growth` fits and how it :class:`Stop`-ped. Each record
reads back with ``from_dict`` under the run record's rule: a wrong type or an impossible
value is a :class:`~allocscope.bench.checked.RecordError`. The hook's events are written
inside the user's process, so :meth:`Inside.of_event` reads them under the same rule and
keeps a malformed one as a record that says so, never as figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from allocscope.bench.checked import (
    RecordError,
    boolean,
    count,
    items,
    mapping,
    number,
    object_or_none,
    present,
    signed,
    text,
    texts,
    whole,
)

VERDICTS = ("growing", "shrinking", "flat", "unclear")  # tree.verdict's words


@dataclass(frozen=True)
class Fit:
    """A straight line through tree RSS (MiB) during the load, and what it says."""

    slope: float  # MiB per unit (10k requests, or an hour); negative when it shrinks
    stderr: float
    points: int
    verdict: str  # see VERDICTS

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise RecordError(f"growth verdict {self.verdict!r}: not one of {VERDICTS}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "slope": self.slope,
            "stderr": self.stderr,
            "points": self.points,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "fit") -> Fit:
        d = mapping(doc, what)
        return cls(
            slope=signed(d.get("slope"), f"{what}.slope"),
            stderr=number(d.get("stderr"), f"{what}.stderr") or 0.0,
            points=count(d.get("points"), f"{what}.points") or 0,
            verdict=text(d, "verdict", what),
        )


@dataclass(frozen=True)
class Growth:
    """RSS growth during a service's load, against requests and against time."""

    per_10k_requests: Fit | None = None  # JSON: mib_per_10k_requests
    per_hour: Fit | None = None  # JSON: mib_per_hour

    @property
    def verdict(self) -> str | None:
        """The verdict of the fit against requests (time's when no request was counted)."""
        fit = self.per_10k_requests or self.per_hour
        return fit.verdict if fit else None

    def to_dict(self) -> dict[str, Any]:
        return present(
            {
                "mib_per_10k_requests": self.per_10k_requests.to_dict()
                if self.per_10k_requests
                else None,
                "mib_per_hour": self.per_hour.to_dict() if self.per_hour else None,
            }
        )

    @classmethod
    def from_dict(cls, doc: Any, what: str = "growth") -> Growth:
        d = mapping(doc, what)
        per_10k, per_hour = d.get("mib_per_10k_requests"), d.get("mib_per_hour")
        return cls(
            per_10k_requests=Fit.from_dict(per_10k, f"{what}.mib_per_10k_requests")
            if per_10k
            else None,
            per_hour=Fit.from_dict(per_hour, f"{what}.mib_per_hour") if per_hour else None,
        )


# The load's figures a run keeps as metrics, when the load reported them.
LOAD_METRICS = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "requests", "error_count")


@dataclass(frozen=True)
class LoadSummary:
    """What the load did: the built-in generator's counts and latencies, or what the
    user's ``--load-cmd`` printed (its totals read from wrk's output when shown)."""

    requests: int | None = None  # answered
    ok: int | None = None  # 2xx and 3xx answers
    errors: dict[str, int] | None = None  # "status 503", "reset", "timeout"
    error_count: int | None = None
    duration_s: float | None = None
    rps: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    command: tuple[str, ...] | None = None  # --load-cmd, as run
    exit_code: int | None = None  # --load-cmd's
    output: str | None = None  # --load-cmd's last words

    def metrics(self) -> dict[str, float]:
        """The figures a run counts (LOAD_METRICS present, and ``load_s``)."""
        found = {k: getattr(self, k) for k in LOAD_METRICS}
        out = {k: float(v) for k, v in found.items() if v is not None}
        out["load_s"] = float(self.duration_s or 0.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        doc = present({k: getattr(self, k) for k in self.__dataclass_fields__})
        if self.command is not None:
            doc["command"] = list(self.command)
        return doc

    @classmethod
    def from_dict(cls, doc: Any, what: str = "load") -> LoadSummary:
        d = mapping(doc, what)
        errors = object_or_none(d, "errors", what)
        ms = {k: number(d.get(k), f"{what}.{k}", optional=True) for k in _LATENCIES}
        return cls(
            requests=count(d.get("requests"), f"{what}.requests", optional=True),
            ok=count(d.get("ok"), f"{what}.ok", optional=True),
            errors={str(k): count(v, f"{what}.errors.{k}") or 0 for k, v in errors.items()}
            if errors is not None
            else None,
            error_count=count(d.get("error_count"), f"{what}.error_count", optional=True),
            duration_s=number(d.get("duration_s"), f"{what}.duration_s", optional=True),
            rps=number(d.get("rps"), f"{what}.rps", optional=True),
            **ms,
            command=texts(d, "command", what) if d.get("command") is not None else None,
            exit_code=whole(d.get("exit_code"), f"{what}.exit_code", optional=True),
            output=text(d, "output", what, optional=True),
        )


_LATENCIES = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


@dataclass(frozen=True)
class TrimEvent:
    """One ``malloc_trim(0)`` the hook ran (``--trim-every``), as the hook wrote it."""

    pid: int
    t: float  # the process's wall clock (time.time())
    rss_before: int
    rss_after: int
    returned: int  # rss_before - rss_after: negative when the process grew meanwhile
    released: int  # malloc_trim's answer: 1 when it gave memory back
    took_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"event": "trim", **{k: getattr(self, k) for k in self.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "trim event") -> TrimEvent:
        d = mapping(doc, what)
        return cls(
            pid=count(d.get("pid"), f"{what}.pid") or 0,
            t=number(d.get("t"), f"{what}.t") or 0.0,
            rss_before=count(d.get("rss_before"), f"{what}.rss_before") or 0,
            rss_after=count(d.get("rss_after"), f"{what}.rss_after") or 0,
            returned=whole(d.get("returned"), f"{what}.returned") or 0,
            released=count(d.get("released"), f"{what}.released") or 0,
            took_s=number(d.get("took_s"), f"{what}.took_s") or 0.0,
        )


@dataclass(frozen=True)
class Trims:
    """``--trim-every``'s malloc_trim calls inside the command's Python processes."""

    count: int = 0
    returned_bytes: int = 0  # what the trims gave back (a trim during growth gives 0)
    events: tuple[TrimEvent, ...] = ()  # the last 200

    @classmethod
    def of(cls, events: Sequence[TrimEvent]) -> Trims:
        return cls(
            count=len(events),
            returned_bytes=sum(max(0, e.returned) for e in events),
            events=tuple(events[-200:]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "returned_bytes": self.returned_bytes,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "trims") -> Trims:
        d = mapping(doc, what)
        return cls(
            count=count(d.get("count", 0), f"{what}.count") or 0,
            returned_bytes=count(d.get("returned_bytes", 0), f"{what}.returned_bytes") or 0,
            events=tuple(
                TrimEvent.from_dict(e, f"{what}.events[]") for e in items(d, "events", what)
            ),
        )


STOPS = ("exited", "SIGTERM", "SIGKILL")


@dataclass(frozen=True)
class Stop:
    """How a service ended: it had exited, SIGTERM stopped it, or SIGKILL after --grace."""

    how: str  # see STOPS
    took_s: float

    def __post_init__(self) -> None:
        if self.how not in STOPS:
            raise RecordError(f"stop.how {self.how!r}: not one of {STOPS}")

    def to_dict(self) -> dict[str, Any]:
        return {"how": self.how, "took_s": self.took_s}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "stop") -> Stop:
        d = mapping(doc, what)
        return cls(how=text(d, "how", what), took_s=number(d.get("took_s"), what) or 0.0)


@dataclass(frozen=True)
class ExitHeap:
    """A Python process's RSS and allocator statistics as it exited (from the hook)."""

    pid: int | None
    rss: int | None
    heap: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "rss": self.rss, "heap": self.heap}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "exit_heap") -> ExitHeap:
        d = mapping(doc, what)
        return cls(
            pid=whole(d.get("pid"), f"{what}.pid", optional=True),
            rss=count(d.get("rss"), f"{what}.rss", optional=True),
            heap=object_or_none(d, "heap", what),
        )


@dataclass(frozen=True)
class Escaped:
    """A process that left the command's process group and was stopped by allocscope."""

    pid: int
    command: str
    how: str  # "SIGTERM" or "SIGKILL": what ended it

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": self.command, "how": self.how}

    def words(self) -> str:
        return (
            f"process {self.pid} ({self.command}) left the command's process group and was"
            f" still running: stopped by {self.how}"
        )

    @classmethod
    def from_dict(cls, doc: Any, what: str = "escaped") -> Escaped:
        d = mapping(doc, what)
        return cls(
            pid=whole(d.get("pid"), f"{what}.pid") or 0,
            command=text(d, "command", what),
            how=text(d, "how", what),
        )


class TreePoint(NamedTuple):
    """One sample of the whole tree; JSON ``[t, rss, pss, processes]``."""

    t: float  # seconds since the start
    rss: int  # bytes, every live process summed
    pss: int  # bytes; 0 for a process whose smaps_rollup could not be read
    processes: int  # how many were alive

    @classmethod
    def from_list(cls, value: Any, what: str) -> TreePoint:
        t, rss, pss, processes = _point(value, cls._fields, what)
        return cls(
            t=number(t, f"{what}.t") or 0.0,
            rss=count(rss, f"{what}.rss") or 0,
            pss=count(pss, f"{what}.pss") or 0,
            processes=count(processes, f"{what}.processes") or 0,
        )


class ProcessPoint(NamedTuple):
    """One sample of one process; JSON ``[t, rss, pss]``."""

    t: float
    rss: int
    pss: int

    @classmethod
    def from_list(cls, value: Any, what: str) -> ProcessPoint:
        t, rss, pss = _point(value, cls._fields, what)
        return cls(
            t=number(t, f"{what}.t") or 0.0,
            rss=count(rss, f"{what}.rss") or 0,
            pss=count(pss, f"{what}.pss") or 0,
        )


def _point(value: Any, names: tuple[str, ...], what: str) -> list[Any]:
    """A timeline point: a list of exactly these fields (JSON keeps timelines compact)."""
    if not isinstance(value, list | tuple) or len(value) != len(names):
        raise RecordError(f"{what}: expected [{', '.join(names)}], not {value!r:.60}")
    return list(value)


@dataclass(frozen=True)
class ProcessTrace:
    """One process of the tree, as sampled from /proc while it lived."""

    pid: int
    ppid: int
    name: str  # its comm
    cpu_s: float  # user + system of this process alone, at its last reading
    peak_rss: int  # bytes
    timeline: tuple[ProcessPoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "name": self.name,
            "cpu_s": self.cpu_s,
            "peak_rss": self.peak_rss,
            "timeline": [list(p) for p in self.timeline],
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "process") -> ProcessTrace:
        d = mapping(doc, what)
        return cls(
            pid=count(d.get("pid"), f"{what}.pid") or 0,
            ppid=count(d.get("ppid"), f"{what}.ppid") or 0,
            name=text(d, "name", what),
            cpu_s=number(d.get("cpu_s"), f"{what}.cpu_s") or 0.0,
            peak_rss=count(d.get("peak_rss"), f"{what}.peak_rss") or 0,
            timeline=tuple(
                ProcessPoint.from_list(p, f"{what}.timeline[]") for p in items(d, "timeline", what)
            ),
        )


@dataclass(frozen=True)
class TreeTrace:
    """The process tree a run sampled: its totals over time and each process it saw
    (a tree not sampled yet has its root only)."""

    root: int  # the process allocscope started
    peak_rss: int = 0  # bytes, the largest sum over the tree
    peak_pss: int = 0
    cpu_s: float = 0.0  # every process seen, each at its last reading
    stride: int = 1  # samples per timeline point: a long run merges neighbours, keeping peaks
    timeline: tuple[TreePoint, ...] = ()
    processes: tuple[ProcessTrace, ...] = ()

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise RecordError(f"tree.stride {self.stride}: a timeline point stands for 1 or more")

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "peak_rss": self.peak_rss,
            "peak_pss": self.peak_pss,
            "cpu_s": self.cpu_s,
            "stride": self.stride,
            "timeline": [list(p) for p in self.timeline],
            "processes": [p.to_dict() for p in self.processes],
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "tree") -> TreeTrace:
        d = mapping(doc, what)
        return cls(
            root=count(d.get("root"), f"{what}.root") or 0,
            peak_rss=count(d.get("peak_rss"), f"{what}.peak_rss") or 0,
            peak_pss=count(d.get("peak_pss"), f"{what}.peak_pss") or 0,
            cpu_s=number(d.get("cpu_s"), f"{what}.cpu_s") or 0.0,
            stride=count(d.get("stride"), f"{what}.stride") or 0,
            timeline=tuple(
                TreePoint.from_list(p, f"{what}.timeline[]") for p in items(d, "timeline", what)
            ),
            processes=tuple(
                ProcessTrace.from_dict(p, f"{what}.processes[]")
                for p in items(d, "processes", what)
            ),
        )


@dataclass(frozen=True)
class ProcessProof:
    """Which allocator serves malloc in one process of the tree, read from outside by the
    symbols of the object that defines it."""

    pid: int
    exe: str | None
    allocator: str | None  # None: could not be told (the process was gone, no permission)
    version: str | None
    path: str | None  # the object that serves malloc
    detail: str = ""
    conflict: str | None = None  # two allocators mapped at once: never counts

    def matches(self, expected: str) -> bool:
        return self.allocator == expected and self.conflict is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "exe": self.exe,
            "allocator": self.allocator,
            "version": self.version,
            "path": self.path,
            "detail": self.detail,
            "conflict": self.conflict,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "proof") -> ProcessProof:
        d = mapping(doc, what)
        return cls(
            pid=count(d.get("pid"), f"{what}.pid") or 0,
            exe=text(d, "exe", what, optional=True),
            allocator=text(d, "allocator", what, optional=True),
            version=text(d, "version", what, optional=True),
            path=text(d, "path", what, optional=True),
            detail=text(d, "detail", what, optional=True) or "",
            conflict=text(d, "conflict", what, optional=True),
        )


@dataclass(frozen=True)
class MallocConfKey:
    """One MALLOC_CONF key, and whether jemalloc inside the process took it."""

    key: str
    in_effect: bool
    reason: str | None = None  # why not, when it is not

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "in_effect": self.in_effect, "reason": self.reason}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "malloc_conf") -> MallocConfKey:
        d = mapping(doc, what)
        return cls(
            key=text(d, "key", what),
            in_effect=boolean(d, "in_effect", what),
            reason=text(d, "reason", what, optional=True),
        )


# How an Inside record begins its error when the hook's event itself could not be read.
MALFORMED = "malformed start event from allocscope's hook"


@dataclass(frozen=True)
class Inside:
    """What allocscope's hook saw inside one Python process of the tree as it started."""

    pid: int | None  # None only when a malformed event did not say it
    pymalloc_blocks: int | None = None  # 0 when PYTHONMALLOC=malloc took pymalloc away
    pythonmalloc: str | None = None  # PYTHONMALLOC as the process had it
    allocator: str | None = None
    version: str | None = None
    path: str | None = None
    source: str | None = None  # how the probe told it (LD_PRELOAD, linked, ...)
    python_allocator: str | None = None
    malloc_conf: tuple[MallocConfKey, ...] | None = None  # None: not jemalloc
    jemalloc_options: dict[str, Any] | None = None  # jemalloc's effective opt.* values
    error: str | None = None  # nothing seen: the hook's own exception, or MALFORMED

    @property
    def malformed(self) -> bool:
        """Its event could not be read (the hook's own exception is not that)."""
        return self.error is not None and self.error.startswith(MALFORMED)

    def to_dict(self) -> dict[str, Any]:
        # The hook's own shape: its start fields, then either its error or what it saw.
        said = {
            "pid": self.pid,
            "pymalloc_blocks": self.pymalloc_blocks,
            "pythonmalloc": self.pythonmalloc,
        }
        if self.error is not None:
            return {**said, "error": self.error}
        conf = self.malloc_conf
        return {
            **said,
            "allocator": self.allocator,
            "version": self.version,
            "path": self.path,
            "source": self.source,
            "python_allocator": self.python_allocator,
            "malloc_conf": [k.to_dict() for k in conf] if conf is not None else None,
            "jemalloc_options": self.jemalloc_options,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "inside") -> Inside:
        d = mapping(doc, what)
        pid = whole(d.get("pid"), f"{what}.pid", optional=True)
        blocks = count(d.get("pymalloc_blocks"), f"{what}.pymalloc_blocks", optional=True)
        pythonmalloc = text(d, "pythonmalloc", what, optional=True)
        if d.get("error") is not None:
            return cls(pid, blocks, pythonmalloc, error=text(d, "error", what))
        conf = d.get("malloc_conf")
        return cls(
            pid,
            blocks,
            pythonmalloc,
            allocator=text(d, "allocator", what, optional=True),
            version=text(d, "version", what, optional=True),
            path=text(d, "path", what, optional=True),
            source=text(d, "source", what, optional=True),
            python_allocator=text(d, "python_allocator", what, optional=True),
            malloc_conf=tuple(
                MallocConfKey.from_dict(k, f"{what}.malloc_conf[]")
                for k in items(d, "malloc_conf", what)
            )
            if conf is not None
            else None,
            jemalloc_options=_options(d, what),
        )

    @classmethod
    def of_event(cls, event: Mapping[str, Any]) -> Inside:
        """From the hook's ``start`` event. It was written inside the user's process, so it
        is read as a results file is; a malformed one becomes a record that says so."""
        own = {k: event.get(k) for k in ("pid", "pymalloc_blocks", "pythonmalloc")}
        try:
            seen = mapping(event.get("inside"), "start event.inside")
            return cls.from_dict({**seen, **own}, "start event")
        except RecordError as e:
            pid = event.get("pid")
            said = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
            return cls(pid=said, error=f"{MALFORMED}: {e}")


@dataclass(frozen=True)
class HookEvents:
    """The hook's events of one run, typed. Each was written inside the user's process, so
    it is read as a results file is; one that cannot be read is said, never counted."""

    inside: tuple[Inside, ...] = ()  # one per start event (a malformed one says so)
    trims: tuple[TrimEvent, ...] = ()
    exits: tuple[ExitHeap, ...] = ()
    restored: int = 0  # processes whose jemalloc background thread the hook restored at fork
    malformed: tuple[str, ...] = ()  # each event that could not be read, in words

    @classmethod
    def read(cls, events: Iterable[Mapping[str, Any]]) -> HookEvents:
        inside: list[Inside] = []
        trims: list[TrimEvent] = []
        exits: list[ExitHeap] = []
        malformed: list[str] = []
        restored = 0
        for event in events:
            kind = event.get("event")
            if kind == "start":
                seen = Inside.of_event(event)
                inside.append(seen)
                if seen.malformed:
                    malformed.append(f"process {seen.pid or '?'}: {seen.error}")
                said = event.get("restored")
                restored += isinstance(said, Mapping) and said.get("action") == "restored"
                continue
            try:
                if kind == "trim":
                    trims.append(TrimEvent.from_dict(event))
                elif kind == "exit":
                    exits.append(ExitHeap.from_dict(event, "exit event"))
            except RecordError as e:
                malformed.append(f"malformed {kind} event from allocscope's hook: {e}")
        return cls(tuple(inside), tuple(trims), tuple(exits), restored, tuple(malformed))


def _options(doc: Mapping[str, Any], what: str) -> dict[str, Any] | None:
    """jemalloc's options: each a name and one plain value (true, a number, a word)."""
    options = object_or_none(doc, "jemalloc_options", what)
    for name, value in (options or {}).items():
        if value is not None and not isinstance(value, bool | int | float | str):
            raise RecordError(f"{what}.jemalloc_options.{name}: expected a plain value")
    return options


@dataclass(frozen=True)
class Evidence:
    """Everything a command's or service's run shows besides its figures."""

    tree: TreeTrace  # the sampled process tree: totals and per process
    processes: tuple[ProcessProof, ...] = ()  # each process's proof, from outside
    inside: tuple[Inside, ...] = ()  # what the hook saw inside Python processes
    exit_heaps: tuple[ExitHeap, ...] = ()
    stdout: str = ""
    trims: Trims = field(default_factory=Trims)
    warnings: tuple[str, ...] = ()  # said in the report's notes
    escaped: tuple[Escaped, ...] = ()
    # a service's
    port: int | None = None
    argv: tuple[str, ...] | None = None
    load: LoadSummary | None = None
    growth: Growth | None = None
    stop: Stop | None = None

    def to_dict(self) -> dict[str, Any]:
        return present(
            {
                "tree": self.tree.to_dict(),
                "processes": [p.to_dict() for p in self.processes],
                "inside": [i.to_dict() for i in self.inside],
                "exit_heaps": [e.to_dict() for e in self.exit_heaps],
                "stdout": self.stdout,
                "trims": self.trims.to_dict(),
                "port": self.port,
                "argv": list(self.argv) if self.argv is not None else None,
                "growth": self.growth.to_dict() if self.growth else None,
                "load": self.load.to_dict() if self.load else None,
                "stop": self.stop.to_dict() if self.stop else None,
                "escaped": [e.to_dict() for e in self.escaped] or None,
                "warnings": list(self.warnings) or None,
            }
        )

    @classmethod
    def from_dict(cls, doc: Any, what: str = "evidence") -> Evidence:
        d = mapping(doc, what)
        trims, growth, load, stop = (d.get(k) for k in ("trims", "growth", "load", "stop"))
        return cls(
            tree=TreeTrace.from_dict(d.get("tree"), f"{what}.tree"),
            processes=tuple(
                ProcessProof.from_dict(p, f"{what}.processes[]")
                for p in items(d, "processes", what)
            ),
            inside=tuple(Inside.from_dict(i, f"{what}.inside[]") for i in items(d, "inside", what)),
            exit_heaps=tuple(
                ExitHeap.from_dict(e, f"{what}.exit_heaps[]") for e in items(d, "exit_heaps", what)
            ),
            stdout=text(d, "stdout", what, optional=True) or "",
            trims=Trims.from_dict(trims, f"{what}.trims") if trims is not None else Trims(),
            warnings=texts(d, "warnings", what),
            escaped=tuple(
                Escaped.from_dict(e, f"{what}.escaped[]") for e in items(d, "escaped", what)
            ),
            port=count(d.get("port"), f"{what}.port", optional=True),
            argv=texts(d, "argv", what) if d.get("argv") is not None else None,
            load=LoadSummary.from_dict(load, f"{what}.load") if load is not None else None,
            growth=Growth.from_dict(growth, f"{what}.growth") if growth is not None else None,
            stop=Stop.from_dict(stop, f"{what}.stop") if stop is not None else None,
        )
