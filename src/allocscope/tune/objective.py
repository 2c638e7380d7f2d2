"""What tune minimises, what it must not lose, and the ratios it judges them by.

Every ratio is a candidate's median over the baseline's, with its bootstrap interval and
verdict computed by :func:`allocscope.bench.analysis.stats.compare` with the same seed and key
``compare`` uses (``workload/variant/metric``). Throughput is the inverse of CPU time for
workloads and commands (the same work in less CPU) and requests per second for services.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from allocscope import exitcodes
from allocscope.bench.analysis import stats
from allocscope.bench.results.search import Ratio
from allocscope.errors import AllocscopeError

OBJECTIVES = ("peak", "retained", "p99", "throughput")
OLDER_NAMES = {"idle": "retained"}  # a service's RSS after its load: now retained, as all
DEFAULT_BOUNDS = "throughput>=0.95,p99<=1.10"
KINDS = ("workload", "command", "service")

# (metric key, higher is better) per kind; absent: the kind has no such figure.
_METRICS: dict[str, dict[str, tuple[str, bool]]] = {
    "workload": {
        "retained": ("rss_retained", False),
        "peak": ("rss_peak", False),
        "throughput": ("cpu_s", False),
    },
    "command": {
        "retained": ("rss_end", False),
        "peak": ("rss_peak", False),
        "throughput": ("cpu_s", False),
    },
    "service": {
        "retained": ("rss_retained", False),  # at the last --settle point after the load
        "peak": ("rss_peak", False),
        "throughput": ("rps", True),
        "p99": ("p99_ms", False),
    },
}
_BOUND = re.compile(r"^\s*(\w+)\s*(>=|<=)\s*([0-9]*\.?[0-9]+)\s*$")


class ObjectiveError(AllocscopeError, ValueError):
    """An objective or bound that cannot apply (exit 3)."""

    exit_code = exitcodes.BAD_INPUT


@dataclass(frozen=True)
class Figure:
    """One figure of one kind: its metric and which way is better."""

    name: str  # retained, throughput, ...
    metric: str  # rss_retained, cpu_s, rps, ...
    inverted: bool  # throughput from CPU time: the ratio is base / candidate


def figure(kind: str, name: str) -> Figure:
    name = OLDER_NAMES.get(name, name)
    table = _METRICS[kind]
    if name not in table:
        raise ObjectiveError(
            f"--objective/--bound {name}: a {kind} has no such figure; "
            f"choose from {', '.join(table)}"
        )
    metric, higher = table[name]
    return Figure(name, metric, inverted=name == "throughput" and not higher)


def default_objective(kind: str) -> str:
    return "retained"


@dataclass(frozen=True)
class Bound:
    figure: Figure
    op: str  # ">=" or "<="
    limit: float

    def holds(self, ratio: float) -> bool:
        return ratio >= self.limit if self.op == ">=" else ratio <= self.limit

    def broken(self, r: Ratio) -> bool:
        """Past the bound on the median *and* a difference compare calls significant (a
        slowdown within noise of none is no slowdown)."""
        return not self.holds(r.ratio) and r.verdict == "significant"

    def __str__(self) -> str:
        return f"{self.figure.name}{self.op}{self.limit:g}"


def parse_bounds(text: str, kind: str, *, given: bool) -> tuple[Bound, ...]:
    """``'throughput>=0.95,p99<=1.10'``: ratios to the baseline. The default bounds apply
    where the kind has the figure (a workload has no p99); a bound the user gives must
    apply, and the baseline itself (ratio 1) must meet it."""
    bounds = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = _BOUND.match(item)
        if m is None:
            raise ObjectiveError(
                f"--bound {item!r}: expected FIGURE>=RATIO or FIGURE<=RATIO, "
                "e.g. throughput>=0.95,p99<=1.10"
            )
        name, op, limit = m.group(1), m.group(2), float(m.group(3))
        if name not in OBJECTIVES:
            raise ObjectiveError(f"--bound {item!r}: unknown figure; use {', '.join(OBJECTIVES)}")
        if name not in _METRICS[kind]:
            if given:
                figure(kind, name)  # raises, naming the figures this kind has
            continue
        bound = Bound(figure(kind, name), op, limit)
        if not bound.holds(1.0):
            raise ObjectiveError(
                f"--bound {item}: the baseline itself fails it (its ratio to itself is 1): "
                "no setting could be recommended"
            )
        bounds.append(bound)
    return tuple(bounds)


def ratio(
    fig: Figure,
    values: Sequence[float],
    base: Sequence[float],
    *,
    seed: int,
    workload: str,
    variant: str,
) -> Ratio | None:
    """The comparison ``compare`` makes (same seed, key, minimum effect and memory floor)."""
    c = stats.compare(
        values,
        base,
        seed=seed,
        key=f"{workload}/{variant}/{fig.metric}",
        kind=_kind(fig.metric),
        floor=stats.floor_of(fig.metric, base),  # compare's memory floor
    )
    if c is None:
        return None
    if fig.inverted:  # the same work in less CPU time: throughput = base / candidate
        return Ratio(fig.name, 1 / c.ratio, 1 / c.high, 1 / c.low, c.verdict, c.n, c.n_base)
    return Ratio(fig.name, c.ratio, c.low, c.high, c.verdict, c.n, c.n_base)


def _kind(metric: str) -> str:
    """compare's rule (results.Results.comparison): a name ending in _s is a time."""
    return "time" if metric.endswith("_s") else "memory"
