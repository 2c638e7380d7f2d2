"""``allocscope tune``'s search as the results document records it (``session.tune``).

The runs of a tune are ordinary runs (``allocscope report`` reads them like compare's);
what only a tune has is here, as typed records: the space it searched, the schedule it
sized to the budget, each round's ranking, every candidate's fate and the decision. They
read back under the run record's rule (:mod:`allocscope.bench.checked`): a wrong type or an
impossible value is a :class:`~allocscope.bench.checked.RecordError`. The records are
data only; the search that fills them is :mod:`allocscope.tune`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from allocscope.bench.checked import (
    RecordError,
    count,
    items,
    mapping,
    number,
    object_or_none,
    present,
    signed,
    text,
    texts,
)

VERDICTS = ("significant", "within noise", "too few runs", "below floor")  # stats.Verdict


def _verdict(d: Mapping[str, Any], what: str) -> str:
    verdict = text(d, "verdict", what)
    if verdict not in VERDICTS:
        raise RecordError(f"{what}.verdict {verdict!r}: not one of {VERDICTS}")
    return str(verdict)


def _judged(d: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A ratio of medians with its interval, verdict and run counts (stats.Comparison's)."""
    return {
        "ratio": number(d.get("ratio"), f"{what}.ratio") or 0.0,
        "low": number(d.get("low"), f"{what}.low") or 0.0,
        "high": number(d.get("high"), f"{what}.high") or 0.0,
        "verdict": _verdict(d, what),
        "n": count(d.get("n"), f"{what}.n") or 0,
        "n_base": count(d.get("n_base"), f"{what}.n_base") or 0,
    }


def _words(d: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    """A map of names to sentences (why a knob was refused, why a candidate left)."""
    found = object_or_none(d, key, what) or {}
    for name, why in found.items():
        if not isinstance(why, str):
            raise RecordError(f"{what}.{key}.{name}: expected text, not {why!r:.60}")
    return found


@dataclass(frozen=True)
class Ratio:
    """A candidate's figure over the baseline's, with its interval (throughput: higher is
    better; the rest: lower is better)."""

    figure: str
    ratio: float
    low: float
    high: float
    verdict: str  # see VERDICTS
    n: int  # the candidate's counted runs
    n_base: int  # the baseline's

    def to_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "ratio": round(self.ratio, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "verdict": self.verdict,
            "n": self.n,
            "n_base": self.n_base,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "ratio") -> Ratio:
        d = mapping(doc, what)
        return cls(figure=text(d, "figure", what), **_judged(d, what))


def _ratios(doc: Mapping[str, Any], what: str) -> dict[str, Ratio]:
    return {str(k): Ratio.from_dict(v, f"{what}.{k}") for k, v in doc.items()}


@dataclass(frozen=True)
class Ranked:
    """A candidate's place in a round's ranking (JSON: its name beside its ratios)."""

    variant: str
    ratios: dict[str, Ratio]

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, **{k: r.to_dict() for k, r in self.ratios.items()}}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "ranked") -> Ranked:
        d = mapping(doc, what)
        variant = text(d, "variant", what)
        return cls(variant, _ratios({k: v for k, v in d.items() if k != "variant"}, what))


@dataclass(frozen=True)
class Round:
    """One round of the race: who ran, how many runs each, the ranking, who left and why."""

    number: int  # JSON: round, from 1
    runs_each: int
    candidates: tuple[str, ...]
    ranking: tuple[Ranked, ...]
    dropped: dict[str, str]  # candidate -> why it left in this round

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "runs_each": self.runs_each,
            "candidates": list(self.candidates),
            "ranking": [r.to_dict() for r in self.ranking],
            "dropped": dict(self.dropped),
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "round") -> Round:
        d = mapping(doc, what)
        return cls(
            number=count(d.get("round"), f"{what}.round") or 0,
            runs_each=count(d.get("runs_each"), f"{what}.runs_each") or 0,
            candidates=texts(d, "candidates", what),
            ranking=tuple(
                Ranked.from_dict(r, f"{what}.ranking[]") for r in items(d, "ranking", what)
            ),
            dropped=_words(d, "dropped", what),
        )


@dataclass(frozen=True)
class Fate:
    """A candidate at the end of the search: its runs, how far it went, its last ratios."""

    variant: str
    spec: str | None  # the variant spec compare accepts (-V)
    runs: int
    counted: int  # runs that proved their allocator and succeeded
    dropped: str | None = None  # why it left the race
    round_left: int | None = None
    ratios: dict[str, Ratio] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "spec": self.spec,
            "runs": self.runs,
            "counted": self.counted,
            "dropped": self.dropped,
            "round_left": self.round_left,
            "ratios": {k: r.to_dict() for k, r in self.ratios.items()},
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "candidate") -> Fate:
        d = mapping(doc, what)
        return cls(
            variant=text(d, "variant", what),
            spec=text(d, "spec", what, optional=True),
            runs=count(d.get("runs"), f"{what}.runs") or 0,
            counted=count(d.get("counted"), f"{what}.counted") or 0,
            dropped=text(d, "dropped", what, optional=True),
            round_left=count(d.get("round_left"), f"{what}.round_left", optional=True),
            ratios=_ratios(object_or_none(d, "ratios", what) or {}, f"{what}.ratios"),
        )


@dataclass(frozen=True)
class Sizing:
    """The search's schedule, sized to the budget by the baseline's warm-up run."""

    first: int  # candidates in round 1
    sizes: tuple[int, ...]  # candidates per round
    runs: int  # runs the schedule plans
    per_run_s: float  # the warm-up's duration it was sized with

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "sizes": list(self.sizes),
            "runs": self.runs,
            "per_run_s": self.per_run_s,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "schedule") -> Sizing:
        d = mapping(doc, what)
        return cls(
            first=count(d.get("first"), f"{what}.first") or 0,
            sizes=tuple(count(s, f"{what}.sizes[]") or 0 for s in items(d, "sizes", what)),
            runs=count(d.get("runs"), f"{what}.runs") or 0,
            per_run_s=number(d.get("per_run_s"), f"{what}.per_run_s") or 0.0,
        )


@dataclass(frozen=True)
class RunnerUp:
    """The next finalist against the recommended one, on the objective's metric."""

    variant: str
    metric: str
    ratio: float
    low: float
    high: float
    verdict: str
    n: int
    n_base: int
    difference: float = 0.0
    floor: float = 0.0
    base_median: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any, what: str = "runner_up") -> RunnerUp:
        d = mapping(doc, what)
        return cls(
            variant=text(d, "variant", what),
            metric=text(d, "metric", what),
            **_judged(d, what),
            difference=signed(d.get("difference", 0.0), f"{what}.difference"),
            floor=number(d.get("floor", 0.0), f"{what}.floor") or 0.0,
            base_median=signed(d.get("base_median", 0.0), f"{what}.base_median"),
        )


@dataclass(frozen=True)
class Recommended:
    """The setting to ship, and how (its environment, its spec for compare)."""

    name: str
    allocator: str
    settings: dict[str, Any]  # knob -> value, as the space file names them
    env: dict[str, str]  # LD_PRELOAD, MALLOC_CONF, ...: what to set
    trim_every_s: float | None
    spec: str
    gains: dict[str, Ratio]  # figure -> its ratio to the baseline
    runner_up: RunnerUp | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "allocator": self.allocator,
            "settings": dict(self.settings),
            "env": dict(self.env),
            "trim_every_s": self.trim_every_s,
            "spec": self.spec,
            "gains": {k: r.to_dict() for k, r in self.gains.items()},
            "runner_up": self.runner_up.to_dict() if self.runner_up else None,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "recommendation") -> Recommended:
        d = mapping(doc, what)
        runner_up = d.get("runner_up")
        return cls(
            name=text(d, "name", what),
            allocator=text(d, "allocator", what),
            settings=object_or_none(d, "settings", what) or {},
            env=_words(d, "env", what),
            trim_every_s=number(d.get("trim_every_s"), f"{what}.trim_every_s", optional=True),
            spec=text(d, "spec", what),
            gains=_ratios(object_or_none(d, "gains", what) or {}, f"{what}.gains"),
            runner_up=RunnerUp.from_dict(runner_up, f"{what}.runner_up") if runner_up else None,
        )


@dataclass(frozen=True)
class Decided:
    """The decision: one setting, or none, with the reason either way."""

    recommendation: Recommended | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        rec = self.recommendation
        return {"recommendation": rec.to_dict() if rec else None, "reason": self.reason}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "decision") -> Decided:
        d = mapping(doc, what)
        rec = d.get("recommendation")
        return cls(
            recommendation=Recommended.from_dict(rec, f"{what}.recommendation") if rec else None,
            reason=text(d, "reason", what),
        )


def _space(doc: Mapping[str, Any], what: str) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for section, knobs in doc.items():
        table = mapping(knobs, f"{what}.{section}")
        out[str(section)] = {str(k): items(table, k, f"{what}.{section}") for k in table}
    return out


@dataclass(frozen=True)
class Search:
    """One tune: what it was asked, what it searched, how it went, what it decided."""

    args: dict[str, Any]  # the command line's options a --resume rebuilds the plan from
    space: dict[str, dict[str, list[Any]]]  # [section] knob -> values searched
    refused: dict[str, str]  # "[section] knob" -> why the installed allocator refused it
    missing: dict[str, str]  # allocator -> why it could not be searched
    budget_s: float
    max_runs: int | None
    specs: dict[str, str]  # candidate -> its spec
    baseline: str
    objective: str
    bounds: tuple[str, ...]  # "throughput>=0.95"
    schedule: Sizing | None = None  # None: stopped before the warm-up sized it
    rounds: tuple[Round, ...] = ()
    stopped: str | None = None  # why the search ended before its last round
    candidates: tuple[Fate, ...] = ()
    decision: Decided | None = None  # None: written mid-search
    duration_s: float | None = None  # the whole tune's, once it ended
    runs_measured: int | None = None  # by the invocation that ended it (a resume: its own)
    measuring_s: float | None = None  # of duration_s, inside the engine

    def fate(self, variant: str) -> Fate | None:
        return next((c for c in self.candidates if c.variant == variant), None)

    def to_dict(self) -> dict[str, Any]:
        # what a search writes once it knows it: absent before (as older tunes wrote it)
        later = present(
            {
                "schedule": self.schedule.to_dict() if self.schedule else None,
                "duration_s": self.duration_s,
                "runs_measured": self.runs_measured,
                "measuring_s": self.measuring_s,
            }
        )
        return {
            "args": dict(self.args),
            "space": {s: {k: list(v) for k, v in knobs.items()} for s, knobs in self.space.items()},
            "refused": dict(self.refused),
            "missing": dict(self.missing),
            "budget_s": self.budget_s,
            "max_runs": self.max_runs,
            "specs": dict(self.specs),
            **later,
            "baseline": self.baseline,
            "objective": self.objective,
            "bounds": list(self.bounds),
            "rounds": [r.to_dict() for r in self.rounds],
            "stopped": self.stopped,
            "candidates": [c.to_dict() for c in self.candidates],
            "decision": self.decision.to_dict() if self.decision else None,
        }

    @classmethod
    def from_dict(cls, doc: Any, what: str = "session.tune") -> Search:
        d = mapping(doc, what)
        schedule, decision = d.get("schedule"), d.get("decision")
        return cls(
            args=object_or_none(d, "args", what) or {},
            space=_space(object_or_none(d, "space", what) or {}, f"{what}.space"),
            refused=_words(d, "refused", what),
            missing=_words(d, "missing", what),
            budget_s=number(d.get("budget_s"), f"{what}.budget_s") or 0.0,
            max_runs=count(d.get("max_runs"), f"{what}.max_runs", optional=True),
            specs=_words(d, "specs", what),
            baseline=text(d, "baseline", what),
            objective=text(d, "objective", what),
            bounds=texts(d, "bounds", what),
            schedule=Sizing.from_dict(schedule, f"{what}.schedule") if schedule else None,
            rounds=tuple(Round.from_dict(r, f"{what}.rounds[]") for r in items(d, "rounds", what)),
            stopped=text(d, "stopped", what, optional=True),
            candidates=tuple(
                Fate.from_dict(c, f"{what}.candidates[]") for c in items(d, "candidates", what)
            ),
            decision=Decided.from_dict(decision, f"{what}.decision") if decision else None,
            duration_s=number(d.get("duration_s"), f"{what}.duration_s", optional=True),
            runs_measured=count(d.get("runs_measured"), f"{what}.runs_measured", optional=True),
            measuring_s=number(d.get("measuring_s"), f"{what}.measuring_s", optional=True),
        )


@dataclass(frozen=True)
class TuneConfig:
    """What a tune's config records of it (config.tune): the objective and the budget."""

    objective: str
    budget_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "budget_s": self.budget_s}

    @classmethod
    def from_dict(cls, doc: Any, what: str = "config.tune") -> TuneConfig:
        d = mapping(doc, what)
        return cls(
            objective=text(d, "objective", what),
            budget_s=number(d.get("budget_s"), f"{what}.budget_s") or 0.0,
        )
