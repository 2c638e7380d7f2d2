"""Is a difference real? Bootstrap intervals of medians and of their ratios, and a verdict.

pyperf and hyperfine answer this for the reader; so do we, with the standard library only:
a percentile bootstrap (resampling each side's runs with replacement) with a recorded
seed, so a report redrawn from the file gives the same intervals.

A ratio is **significant** when its whole 99 % interval lies at least :data:`MIN_EFFECT`
away from 1 (a difference under 3 % in RSS or 5 % in CPU time is not worth a decision) and
a rank test agrees (Mann-Whitney's statistic, p < 2 % by random relabelling). The whole
interval, not just the median ratio: a peak RSS whose runs spread +-4 % around no effect
was once called a 3 % difference by the median-ratio rule, and the next run called it
noise (tests/integration/test_compare_numbers.py). Anything else is **within noise**;
with fewer than :data:`MIN_RUNS` runs on either side there is no verdict. A difference of
medians under the caller's absolute ``floor`` (memory: see ``results.memory_floor``) is
**below floor** whatever its interval: 0.4 against 0.7 MiB is a 0.57x ratio that no
deployment decision should rest on. On simulated
identical variants (5 runs each, 5-20 % noise) about 1 ratio in 70 was called significant
under the median-ratio rule: 5 runs that happen not to overlap at all (2 orders in 252)
look like a difference to any test. More runs (``--repeats 8``, or ``auto``) bring it
under 1 in 100.
"""

from __future__ import annotations

import functools
import random
import statistics
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

# 99 %, not 95 %: one table holds dozens of ratios (5 variants x 4 figures x 3 workloads);
# at 95 % a few of them would be false alarms in every run. Measured on simulated
# identical variants (5 runs each, 5-20 % noise): 0.3-2 % false alarms at 99 %.
CONFIDENCE = 0.99
ALPHA = 0.02  # the rank test's level
RESAMPLES = 2000
# With 3 runs a side, a bootstrap interval is about the range of the runs: two identical
# variants whose 3 runs happen not to overlap (1 time in 10) would be called different.
MIN_RUNS = 5
# The smallest difference we call real, by kind of figure.
MIN_EFFECT = {"memory": 0.03, "time": 0.05}

# The smallest memory difference that may be called significant: 2 MiB, or 3 % of the
# baseline's RSS when that is larger. RSS moves in allocator units of about 1 MiB whatever
# the allocator does well or badly (one pymalloc arena since CPython 3.10, a jemalloc
# extent, a mimalloc segment, glibc's top pad), and either side may keep or return one such
# unit by the luck of its last free: a difference under two units can be that luck alone
# (make run once called kept RSS of 0.1 against 1.1 MiB "0.06x sig"). 3 % because that is
# MIN_EFFECT's smallest memory effect worth a decision, and rss_kept (a small figure on top
# of a large process) must be judged against the process, not itself.
MEMORY_FLOOR_BYTES = 2 * 2**20
MEMORY_FLOOR_SHARE = MIN_EFFECT["memory"]


def is_memory(metric: str) -> bool:
    """A figure in bytes of RSS or PSS (the floor applies to these only)."""
    return metric.startswith(("rss_", "pss_"))


def memory_floor(base_rss: Sequence[float]) -> float:
    """max(MEMORY_FLOOR_BYTES, 3 % of the baseline's median RSS)."""
    share = MEMORY_FLOOR_SHARE * statistics.median(base_rss) if base_rss else 0.0
    return max(float(MEMORY_FLOOR_BYTES), share)


def floor_of(metric: str, base: Sequence[float]) -> float:
    """The floor a comparison of ``metric`` against ``base`` gets: none but for memory."""
    return memory_floor(base) if is_memory(metric) else 0.0


Verdict = Literal["significant", "within noise", "too few runs", "below floor"]


@dataclass(frozen=True)
class Interval:
    median: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the median (0.05: +-5 %)."""
        return (self.high - self.low) / 2 / abs(self.median) if self.median else 0.0


@dataclass(frozen=True)
class Comparison:
    ratio: float  # median / baseline median
    low: float  # the ratio's interval
    high: float
    verdict: Verdict
    n: int
    n_base: int
    difference: float = 0.0  # median minus the baseline's median, in the values' unit
    floor: float = 0.0  # the smallest absolute difference that may be significant
    base_median: float = 0.0

    @property
    def short(self) -> str:
        return {"significant": "sig", "within noise": "noise", "below floor": "<floor"}.get(
            self.verdict, f"n<{MIN_RUNS}"
        )

    @property
    def single(self) -> bool:
        """One run on a side: the interval has no width and means nothing."""
        return min(self.n, self.n_base) < 2

    @property
    def ratio_meaningful(self) -> bool:
        """A ratio on a base under the floor (0.1 MiB kept) says nothing: show the difference."""
        return self.base_median > max(self.floor, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rng(seed: int, *key: str) -> random.Random:
    """One stream per figure, stable across runs of the report (no hash randomisation)."""
    return random.Random(seed ^ zlib.crc32("/".join(key).encode()))


def _quantiles(values: list[float]) -> tuple[float, float]:
    values.sort()
    tail = (1 - CONFIDENCE) / 2
    last = len(values) - 1
    return values[round(tail * last)], values[round((1 - tail) * last)]


@functools.lru_cache(maxsize=4096)
def _median_interval(values: tuple[float, ...], seed: int, key: str) -> Interval:
    rng = _rng(seed, key)
    n = len(values)
    meds = [statistics.median(rng.choices(values, k=n)) for _ in range(RESAMPLES)]
    low, high = _quantiles(meds)
    return Interval(statistics.median(values), low, high, n)


def median_interval(values: Sequence[float], *, seed: int, key: str = "") -> Interval | None:
    """The median and its bootstrap interval; None without values."""
    if not values:
        return None
    return _median_interval(tuple(values), seed, key)


@functools.lru_cache(maxsize=4096)
def _compare(
    values: tuple[float, ...],
    base: tuple[float, ...],
    seed: int,
    key: str,
    min_effect: float,
    floor: float,
) -> Comparison | None:
    base_median = statistics.median(base)
    if base_median <= 0 or statistics.median(values) <= 0:
        return None  # kept RSS can be negative (less than before the work): no ratio
    difference = statistics.median(values) - base_median
    ratio = statistics.median(values) / base_median
    rng = _rng(seed, key)
    ratios = []
    for _ in range(RESAMPLES):
        b = statistics.median(rng.choices(base, k=len(base)))
        v = statistics.median(rng.choices(values, k=len(values)))
        if b > 0:
            ratios.append(v / b)
    low, high = _quantiles(ratios) if ratios else (ratio, ratio)
    verdict: Verdict
    if min(len(values), len(base)) < MIN_RUNS:
        verdict = "too few runs"
    elif abs(difference) < floor:
        verdict = "below floor"
    elif (low >= 1 + min_effect or high <= 1 - min_effect) and _permutation_p(
        values, base, rng
    ) < ALPHA:
        verdict = "significant"
    else:
        verdict = "within noise"
    return Comparison(
        ratio, low, high, verdict, len(values), len(base), difference, floor, base_median
    )


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _permutation_p(values: tuple[float, ...], base: tuple[float, ...], rng: random.Random) -> float:
    """A rank test (Mann-Whitney's statistic, its p by random relabelling): how often runs
    labelled at random sit as far to one side as these do, if the variant made no
    difference. Valid for any distribution, ties included."""
    ranks = _ranks([*values, *base])
    n = len(values)
    middle = n * (len(ranks) + 1) / 2
    observed = abs(sum(ranks[:n]) - middle)
    hits = 0
    for _ in range(RESAMPLES):
        rng.shuffle(ranks)
        hits += abs(sum(ranks[:n]) - middle) >= observed - 1e-9
    return (hits + 1) / (RESAMPLES + 1)


def compare(
    values: Sequence[float],
    base: Sequence[float],
    *,
    seed: int,
    key: str = "",
    kind: str = "memory",
    floor: float = 0.0,
) -> Comparison | None:
    """``values`` against ``base``: the ratio of medians, its interval and the verdict.
    None when either side has no values or either median is not positive. A difference
    of medians smaller than ``floor`` (the values' unit) is never significant."""
    if not values or not base:
        return None
    return _compare(tuple(values), tuple(base), seed, key, MIN_EFFECT[kind], floor)


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (stdev / mean)."""
    if len(values) < 2 or not statistics.mean(values):
        return None
    return statistics.stdev(values) / statistics.mean(values)
