"""What a run of a user's command or service shows besides its figures, as typed records.

A command's or service's :class:`~allocscope.bench.record.RunRecord` carries one
:class:`Evidence`: the process tree it sampled, each process's proof, what the hook saw
inside Python processes, the trims, the warnings the report repeats; a service adds its
:class:`LoadSummary`, its :class:`Growth` fits and how it :class:`Stop`-ped. Each record
reads back with ``from_dict`` under the run record's rule: a wrong type or an impossible
value is a :class:`~allocscope.bench.checked.RecordError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from allocscope.bench.checked import (
    RecordError,
    count,
    items,
    mapping,
    number,
    object_or_none,
    objects,
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
class Trims:
    """``--trim-every``'s malloc_trim calls inside the command's Python processes."""

    count: int = 0
    returned_bytes: int = 0
    events: tuple[dict[str, Any], ...] = ()  # the hook's trim events (the last 200)

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> Trims:
        return cls(
            count=len(events),
            returned_bytes=sum(int(e.get("returned") or 0) for e in events),
            events=tuple(events[-200:]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "returned_bytes": self.returned_bytes,
            "events": list(self.events),
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "trims") -> Trims:
        d = mapping(doc, what)
        return cls(
            count=count(d.get("count", 0), f"{what}.count") or 0,
            returned_bytes=count(d.get("returned_bytes", 0), f"{what}.returned_bytes") or 0,
            events=objects(d, "events", what),
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


@dataclass(frozen=True)
class Evidence:
    """Everything a command's or service's run shows besides its figures."""

    tree: dict[str, Any]  # the sampled process tree: totals and per process (tree.to_dict)
    processes: tuple[dict[str, Any], ...] = ()  # each process's proof, from outside
    inside: tuple[dict[str, Any], ...] = ()  # what the hook saw inside Python processes
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
                "tree": self.tree,
                "processes": list(self.processes),
                "inside": list(self.inside),
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
            tree=dict(mapping(d.get("tree", {}), f"{what}.tree")),
            processes=objects(d, "processes", what),
            inside=objects(d, "inside", what),
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
