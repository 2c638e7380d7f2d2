"""The results document: every run of a session, its summaries and its comparisons."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from allocscope import __version__
from allocscope.bench.analysis import stats
from allocscope.bench.record import RunRecord
from allocscope.bench.results.header import Config, Host, Session, VariantInfo
from allocscope.bench.results.metrics import VERDICT_METRICS, value
from allocscope.errors import AllocscopeError

SCHEMA = "allocscope.results"
VERSION = 3


class ResultsError(AllocscopeError):
    """A results file that cannot be read: truncated, not ours, or too new (exit 3)."""


@dataclass(frozen=True)
class Summary:
    """One metric of one variant on one workload, over the runs that count."""

    median: float
    low: float
    high: float
    n: int

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.04 means the repeats lie within 4 % of the median."""
        return (self.high - self.low) / self.median if self.median else 0.0


def summarize(values: Iterable[float]) -> Summary | None:
    vals = sorted(values)
    if not vals:
        return None
    return Summary(statistics.median(vals), vals[0], vals[-1], len(vals))


@dataclass
class Results:
    created: str
    host: Host
    config: Config  # the plan as recorded
    variants: list[VariantInfo]  # unavailable ones included
    runs: list[RunRecord]
    allocscope_version: str = __version__
    migrated_from: int | None = None  # the version the file was written in, if older
    # How the session ran: seed of the shuffled order, why the repeats stopped, noise.
    session: Session = field(default_factory=Session)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "created": self.created,
            "allocscope_version": self.allocscope_version,
            "host": self.host.to_dict(),
            "config": self.config.to_dict(),
            "variants": [v.to_dict() for v in self.variants],
            "session": self.session.to_dict(),
            "comparisons": self.comparisons(),  # derived from the runs; recomputed on reading
            "runs": [r.to_dict() for r in self.runs],
        }

    def workloads(self) -> list[str]:
        return _unique(r.workload for r in self.runs)

    def variant_names(self) -> list[str]:
        names = [v.name for v in self.variants]
        return _unique([*names, *(r.variant for r in self.runs)])

    def counted(self, workload: str, variant: str) -> list[RunRecord]:
        return [
            r for r in self.runs if r.workload == workload and r.variant == variant and r.counts
        ]

    def values(self, workload: str, variant: str, metric: str) -> list[float]:
        """One figure per counted run, in run order; ``rss_kept`` is derived (see DERIVED)."""
        return [v for r in self.counted(workload, variant) if (v := value(r, metric)) is not None]

    def summary(self, workload: str, variant: str, metric: str) -> Summary | None:
        return summarize(self.values(workload, variant, metric))

    @property
    def seed(self) -> int:
        """The session's seed (shuffled order, bootstrap); 0 for files that have none."""
        return self.session.seed or 0

    def interval(self, workload: str, variant: str, metric: str) -> stats.Interval | None:
        """The median of a figure and its bootstrap interval."""
        key = f"{workload}/{variant}/{metric}"
        return stats.median_interval(
            self.values(workload, variant, metric), seed=self.seed, key=key
        )

    def comparison(self, workload: str, variant: str, metric: str) -> stats.Comparison | None:
        """``variant`` against the baseline on one figure, with its interval and verdict."""
        base = self.baseline()
        if base is None or variant == base:
            return None
        return stats.compare(
            self.values(workload, variant, metric),
            self.values(workload, base, metric),
            seed=self.seed,
            key=f"{workload}/{variant}/{metric}",
            kind="time" if metric.endswith("_s") else "memory",
            floor=self.memory_floor(workload, metric) if stats.is_memory(metric) else 0.0,
        )

    def memory_floor(self, workload: str, metric: str) -> float:
        """stats.memory_floor against the baseline's RSS; for rss_kept, the retained RSS
        the kept part sits in."""
        base = self.baseline()
        whole = "rss_retained" if metric == "rss_kept" else metric
        return stats.memory_floor(self.values(workload, base, whole) if base else [])

    def comparisons(self) -> list[dict[str, Any]]:
        """Every ratio against the baseline on the VERDICT_METRICS, for the JSON."""
        out = []
        for workload in self.workloads():
            for variant in self.variant_names():
                for metric in VERDICT_METRICS:
                    c = self.comparison(workload, variant, metric)
                    if c is not None:
                        out.append(
                            {"workload": workload, "variant": variant, "metric": metric,
                             "baseline": self.baseline(), **c.to_dict()}
                        )  # fmt: skip
        return out

    def baseline(self) -> str | None:
        """The glibc variant the others are compared with."""
        names = self.variant_names()
        if "glibc" in names:
            return "glibc"
        plain = [v.name for v in self.variants if v.allocator == "glibc" and not v.env]
        return plain[0] if plain else None

    def variant(self, name: str) -> VariantInfo | None:
        return next((v for v in self.variants if v.name == name), None)

    def unavailable(self) -> list[VariantInfo]:
        return [v for v in self.variants if not v.available]

    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.ok]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
