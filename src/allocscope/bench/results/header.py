"""The results document's header as typed records: the host, the config (the plan as
recorded), the variants and how the session went.

Each reads back with ``from_dict`` under the run record's rule (a wrong type or an
impossible value is a :class:`~allocscope.bench.checked.RecordError`, never a figure in a
table); every field is optional where an older version of the file may lack it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from allocscope.bench.checked import (
    RecordError,
    boolean,
    count,
    mapping,
    number,
    numbers,
    object_or_none,
    present,
    text,
    texts,
    whole,
)
from allocscope.bench.record import Noise
from allocscope.bench.results.search import Search, TuneConfig

if TYPE_CHECKING:
    from allocscope.bench.variants import Variant


@dataclass(frozen=True)
class Library:
    """An allocator library the children proved they ran on."""

    allocator: str | None
    version: str | None
    realpath: str

    def to_dict(self) -> dict[str, Any]:
        return {"allocator": self.allocator, "version": self.version, "realpath": self.realpath}

    @classmethod
    def from_dict(cls, doc: Any, what: str) -> Library:
        d = mapping(doc, what)
        return cls(
            allocator=text(d, "allocator", what, optional=True),
            version=text(d, "version", what, optional=True),
            realpath=text(d, "realpath", what, optional=True) or "",
        )


_HOST_TEXT = (
    "hostname", "cpu_model", "kernel", "machine", "libc", "thp_enabled", "thp_defrag",
    "python", "python_implementation", "python_executable", "allocscope_version",
)  # fmt: skip


@dataclass(frozen=True)
class Host:
    """The machine a session ran on, and its load before and after."""

    hostname: str | None = None
    cpu_model: str | None = None
    cpus: int | None = None
    cpus_usable: int | None = None
    memory_bytes: int | None = None
    kernel: str | None = None
    machine: str | None = None
    libc: str | None = None
    thp_enabled: str | None = None
    thp_defrag: str | None = None
    python: str | None = None
    python_implementation: str | None = None
    python_executable: str | None = None
    allocscope_version: str | None = None
    libraries: dict[str, Library] | None = None  # by path
    loadavg_before: tuple[float, ...] | None = None  # 1, 5, 15 minutes
    loadavg_after: tuple[float, ...] | None = None

    def busy_before(self) -> tuple[float, int] | None:
        """(1-minute load, CPUs) when the machine was loaded before the session started
        (half a load per usable CPU or more); our own children do not inflate it yet."""
        cpus = self.cpus_usable or self.cpus
        before = self.loadavg_before[0] if self.loadavg_before else None
        if not cpus or before is None or before < 0.5 * cpus:
            return None
        return before, cpus

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.libraries is not None:
            doc["libraries"] = {p: lib.to_dict() for p, lib in self.libraries.items()}
        for key in ("loadavg_before", "loadavg_after"):
            if doc[key] is not None:
                doc[key] = list(doc[key])
        return present(doc)

    @classmethod
    def from_dict(cls, doc: Any, what: str = "host") -> Host:
        d = mapping(doc, what)
        libs = object_or_none(d, "libraries", what)
        return cls(
            **{k: text(d, k, what, optional=True) for k in _HOST_TEXT},
            cpus=count(d.get("cpus"), f"{what}.cpus", optional=True),
            cpus_usable=count(d.get("cpus_usable"), f"{what}.cpus_usable", optional=True),
            memory_bytes=count(d.get("memory_bytes"), f"{what}.memory_bytes", optional=True),
            libraries={
                str(p): Library.from_dict(v, f"{what}.libraries.{p}") for p, v in libs.items()
            }
            if libs is not None
            else None,
            loadavg_before=numbers(d, "loadavg_before", what),
            loadavg_after=numbers(d, "loadavg_after", what),
        )


@dataclass(frozen=True)
class AutoRepeats:
    """``--repeats auto``: until every headline interval is this narrow, or the budget."""

    target: float  # half-width of the interval / the median (the flag's name)
    budget_s: float
    max: int

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "budget_s": self.budget_s, "max": self.max}

    @classmethod
    def from_dict(cls, doc: Any, what: str) -> AutoRepeats:
        d = mapping(doc, what)
        return cls(
            target=number(d.get("target"), f"{what}.target") or 0.0,
            budget_s=number(d.get("budget_s"), f"{what}.budget_s") or 0.0,
            max=count(d.get("max"), f"{what}.max") or 0,
        )


@dataclass(frozen=True)
class DefaultRepeats:
    """A command or service without ``--repeats``: ``runs`` of each, fewer once a run
    took ``long_run_s`` or more (only the rounds that fit ``budget_s``)."""

    runs: int
    long_run_s: float
    budget_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "long_run_s": self.long_run_s, "budget_s": self.budget_s}

    @classmethod
    def from_dict(cls, doc: Any, what: str) -> DefaultRepeats:
        d = mapping(doc, what)
        return cls(
            runs=count(d.get("runs"), f"{what}.runs") or 0,
            long_run_s=number(d.get("long_run_s", 60), f"{what}.long_run_s") or 0.0,
            budget_s=number(d.get("budget_s", 600), f"{what}.budget_s") or 0.0,
        )


@dataclass(frozen=True)
class Config:
    """The plan as the results file records it (``Plan.config()``)."""

    kind: str | None = None  # workload, command, service
    repeats: int | None = None
    warmup: int | None = None
    settle_s: tuple[float, ...] | None = None  # --settle: seconds after the work or load
    interval_s: float | None = None
    timeout_s: float | None = None
    serial: bool | None = None
    purge: bool | None = None
    seed: int | None = None
    repeats_auto: AutoRepeats | None = None
    repeats_default: DefaultRepeats | None = None
    workloads: dict[str, dict[str, Any]] | None = None  # name -> its parameters
    argv: tuple[str, ...] | None = None  # a command
    serve: dict[str, Any] | None = None  # a service: plan.Service.to_dict()
    tune: TuneConfig | None = None  # allocscope tune: objective and budget
    source: str | None = None  # a file migrated from the demo's output

    def params(self, workload: str) -> dict[str, Any]:
        return (self.workloads or {}).get(workload) or {}

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("settle_s", "argv"):
            if doc[key] is not None:
                doc[key] = list(doc[key])
        for key in ("repeats_auto", "repeats_default", "tune"):
            if doc[key] is not None:
                doc[key] = doc[key].to_dict()
        # Plan.config() always wrote these two, null when off: keep them so.
        return {**present(doc), "repeats_auto": doc["repeats_auto"],
                "repeats_default": doc["repeats_default"]}  # fmt: skip

    @classmethod
    def from_dict(cls, doc: Any, what: str = "config") -> Config:
        d = mapping(doc, what)
        auto, default = d.get("repeats_auto"), d.get("repeats_default")
        works = object_or_none(d, "workloads", what)
        tune = d.get("tune")
        return cls(
            kind=text(d, "kind", what, optional=True),
            repeats=count(d.get("repeats"), f"{what}.repeats", optional=True),
            warmup=count(d.get("warmup"), f"{what}.warmup", optional=True),
            settle_s=numbers(d, "settle_s", what),
            interval_s=number(d.get("interval_s"), f"{what}.interval_s", optional=True),
            timeout_s=number(d.get("timeout_s"), f"{what}.timeout_s", optional=True),
            serial=boolean(d, "serial", what) if d.get("serial") is not None else None,
            purge=boolean(d, "purge", what) if d.get("purge") is not None else None,
            seed=whole(d.get("seed"), f"{what}.seed", optional=True),
            repeats_auto=AutoRepeats.from_dict(auto, f"{what}.repeats_auto") if auto else None,
            repeats_default=DefaultRepeats.from_dict(default, f"{what}.repeats_default")
            if default
            else None,
            workloads={
                str(name): dict(mapping(params, f"{what}.workloads.{name}"))
                for name, params in works.items()
            }
            if works is not None
            else None,
            argv=texts(d, "argv", what) if d.get("argv") is not None else None,
            serve=object_or_none(d, "serve", what),
            tune=TuneConfig.from_dict(tune, f"{what}.tune") if tune is not None else None,
            source=text(d, "source", what, optional=True),
        )


@dataclass(frozen=True)
class VariantInfo:
    """A variant as the results file describes it (``Variant.to_dict()``)."""

    name: str
    allocator: str | None = None
    library: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    available: bool = True
    unavailable: str | None = None  # why not
    trim_every: float | None = None

    @classmethod
    def of(cls, variant: Variant) -> VariantInfo:
        return cls(
            name=variant.name,
            allocator=variant.allocator,
            library=variant.library,
            env=dict(variant.env),
            description=variant.description,
            available=variant.available,
            unavailable=variant.unavailable,
            trim_every=variant.trim_every,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"env": dict(self.env)}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "variant") -> VariantInfo:
        d = mapping(doc, what)
        if not isinstance(d.get("name"), str):
            raise RecordError(f"a variant without a name: {doc!r:.80}")
        what = f"variant {d['name']}"
        env = mapping(d.get("env") or {}, f"{what}.env")
        return cls(
            name=d["name"],
            allocator=text(d, "allocator", what, optional=True),
            library=text(d, "library", what, optional=True),
            env={str(k): str(v) for k, v in env.items()},
            description=text(d, "description", what, optional=True),
            available=boolean(d, "available", what, default=True),
            unavailable=text(d, "unavailable", what, optional=True),
            trim_every=number(d.get("trim_every"), f"{what}.trim_every", optional=True),
        )


@dataclass(frozen=True)
class Session:
    """How the session went: its seed, its noise, and why it made fewer runs than asked."""

    seed: int | None = None  # of the shuffled order and the bootstrap
    duration_s: float | None = None
    noise: Noise | None = None  # over the whole session
    busy_runs: int | None = None
    measured_runs: int | None = None
    repeats_auto: dict[str, str] | None = None  # workload -> why --repeats auto stopped
    repeats_stopped: str | None = None  # why a command's or service's default runs stopped
    interrupted: str | None = None  # the signal that stopped it (SIGINT, ...)
    tune: Search | None = None  # allocscope tune: the search (tune.document)

    def __post_init__(self) -> None:
        if self.interrupted is not None and self.interrupted not in signal.Signals.__members__:
            raise RecordError(f"session.interrupted: {self.interrupted!r:.40} is not a signal")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["noise"] = self.noise.to_dict() if self.noise else None
        doc["tune"] = self.tune.to_dict() if self.tune else None
        return present(doc)

    @classmethod
    def from_dict(cls, doc: Any, what: str = "session") -> Session:
        d = mapping(doc, what)
        noise, auto, tune = d.get("noise"), object_or_none(d, "repeats_auto", what), d.get("tune")
        if auto is not None:
            for key, value in auto.items():
                if not isinstance(value, str):
                    raise RecordError(f"{what}.repeats_auto.{key}: expected text")
        return cls(
            seed=whole(d.get("seed"), f"{what}.seed", optional=True),
            duration_s=number(d.get("duration_s"), f"{what}.duration_s", optional=True),
            noise=Noise.from_dict(noise, f"{what}.noise") if noise is not None else None,
            busy_runs=count(d.get("busy_runs"), f"{what}.busy_runs", optional=True),
            measured_runs=count(d.get("measured_runs"), f"{what}.measured_runs", optional=True),
            repeats_auto=auto,
            repeats_stopped=text(d, "repeats_stopped", what, optional=True),
            interrupted=text(d, "interrupted", what, optional=True),
            tune=Search.from_dict(tune, f"{what}.tune") if tune is not None else None,
        )
