"""Successive halving that respects noise: many candidates measured cheaply, few well.

Round 1 gives every candidate one run; each later round keeps the best third (by the
objective's median ratio to the baseline) and tops it up to more runs; the finalists end
with :data:`FINAL_RUNS` runs, enough for compare's 99 % interval and verdict
(``stats.MIN_RUNS`` is 5). In every round the baseline runs as often as each survivor,
and each repeat's order (survivors and baseline) is shuffled by the seeded generator, so
a burst of noise on the machine spreads over everyone instead of landing on one.

A candidate whose runs all fail (a setting that crashes the target) is dropped with its
failures and stderr; the search goes on. A bound is broken in the final round when the median
ratio is past it and compare's verdict on that figure is "significant"; before it, only a
candidate whose whole interval lies past the bound (by more than the early rounds' noise
allowance) is dropped.

Why our own halving and not optuna: the space is small and discrete (tens to thousands
of settings), runs are expensive and noisy, and the decision must come from the same
interval and verdict ``compare`` prints. Halving spends runs where the decision is made
and its schedule is known before the first run (so a budget can be checked up front and
a resumed search replays the same order); a sampler's suggestions would still need this
noise handling around them, and it would add a dependency for no better answer.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from allocscope.bench.kinds.workload.runner import Interrupted
from allocscope.bench.record import RunRecord
from allocscope.bench.results import value
from allocscope.bench.results.search import Ranked, Ratio, Round, Sizing
from allocscope.bench.variants import Variant
from allocscope.tune.objective import Bound, Figure, ratio

ETA = 3  # keep a third each round
TOTALS = (1, 3, 7)  # runs per candidate after each round; the last is the final round
FINAL_RUNS = TOTALS[-1]
# How far past a bound a candidate may be in the early rounds, by its runs so far: one run
# of CPU time on a shared machine strays 20 % (measured here under load 16-30).
EARLY_SLACK = {1: 0.25, 3: 0.10}
FIRST_MAX = 90  # candidates in round 1 at most
CHUNK = 10  # round 1 runs in slices of this many runs, checking the time between them
ROUND_ONE_SHARE = 0.5  # of the budget round 1 may spend, if runs turn out slower than sized


@dataclass(frozen=True)
class Schedule:
    first: int  # candidates in round 1

    def sizes(self) -> list[int]:
        """Candidates in each round."""
        sizes = [self.first]
        for _ in TOTALS[1:]:
            sizes.append(max(1, math.ceil(sizes[-1] / ETA)))
        return sizes

    def record(self, *, per_run_s: float) -> Sizing:
        """As the results document records it, with the warm-up time it was sized by."""
        return Sizing(self.first, tuple(self.sizes()), self.runs(), per_run_s)

    def runs(self) -> int:
        """Every run the schedule makes: each round's survivors and the baseline, plus
        one warm-up."""
        total, before = 1, 0
        for n, upto in zip(self.sizes(), TOTALS, strict=True):
            total += (n + 1) * (upto - before)
            before = upto
        return total


def fit(budget_runs: int, candidates: int) -> Schedule | None:
    """The largest schedule within ``budget_runs`` runs and the candidates there are."""
    best = None
    for n in range(1, min(candidates, FIRST_MAX) + 1):
        if Schedule(n).runs() <= budget_runs:
            best = Schedule(n)
    return best


@dataclass
class Candidate:
    variant: Variant
    runs: list[RunRecord] = field(default_factory=list)
    dropped: str | None = None  # why it left the race
    round_left: int | None = None
    ratios: dict[str, Ratio] = field(default_factory=dict)  # after its last round

    @property
    def name(self) -> str:
        return self.variant.name

    def counted(self) -> list[RunRecord]:
        return [r for r in self.runs if r.counts]


@dataclass
class Race:
    """The state of one search: every run, every candidate's fate, each round's ranking."""

    baseline: Variant
    candidates: list[Candidate]
    objective: Figure
    bounds: tuple[Bound, ...]
    seed: int
    workload: str
    base_runs: list[RunRecord] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    stopped: str | None = None  # why the search ended before its last round
    measuring_s: float = 0.0  # time inside the engine; the rest is the search's own

    def values(self, runs: Sequence[RunRecord], metric: str) -> list[float]:
        return [v for r in runs if r.counts and (v := value(r, metric)) is not None]

    def judge(self, c: Candidate) -> dict[str, Ratio]:
        figures = [self.objective, *(b.figure for b in self.bounds)]
        out = {}
        for fig in figures:
            r = ratio(
                fig,
                self.values(c.runs, fig.metric),
                self.values(self.base_runs, fig.metric),
                seed=self.seed,
                workload=self.workload,
                variant=c.name,
            )
            if r is not None:
                out[fig.name] = r
        return out

    def score(self, c: Candidate) -> float:
        """Lower is better: the objective's ratio (throughput: its inverse)."""
        r = c.ratios.get(self.objective.name)
        if r is None:
            return math.inf
        return 1 / r.ratio if self.objective.name == "throughput" else r.ratio

    def broken_bound(self, c: Candidate, *, final: bool) -> str | None:
        """The bound a candidate breaks, judged as compare judges a difference. In the
        final round: its median ratio is past the bound *and* compare calls the difference
        from the baseline significant (a slowdown within noise of none is no slowdown:
        on a busy machine CPU time spreads +-20 % around no effect). In the early rounds:
        only when even the end of its interval most in its favour is past the bound by
        more than the early noise allowance (one run has no interval of its own)."""
        for b in self.bounds:
            r = c.ratios.get(b.figure.name)
            if r is None:
                continue
            if final:
                broken = b.broken(r)
            else:
                slack = EARLY_SLACK.get(r.n, EARLY_SLACK[3])
                seen = r.high if b.op == ">=" else r.low
                limit = b.limit - slack if b.op == ">=" else b.limit + slack
                broken = not Bound(b.figure, b.op, limit).holds(seen)
            if broken:
                return f"{b.figure.name} ratio {r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}] breaks {b}"
        return None

    def alive(self) -> list[Candidate]:
        return [c for c in self.candidates if c.dropped is None]

    def finalists(self) -> list[Candidate]:
        """The candidates that ran the final round, best first."""
        final = [c for c in self.alive() if len(c.counted()) >= FINAL_RUNS]
        return sorted(final, key=self.score)


def _failure(c: Candidate) -> str:
    last = c.runs[-1] if c.runs else None
    if last is None:
        return "no run"
    why = "; ".join(last.failures) or f"exit status {last.exit_code}"
    tail = last.stderr.strip().splitlines()[-3:]
    return f"every run failed: {why}" + (f" | stderr: {' / '.join(tail)}" if tail else "")


def _left(n: int, i: int, before: int) -> int:
    """Runs from round ``i`` to the end with ``n`` candidates in it (and the baseline)."""
    total, size = 0, n
    for upto in TOTALS[i:]:
        total += (size + 1) * (upto - before)
        before, size = upto, max(1, math.ceil(size / ETA))
    return total


def _over_runs(n: int, i: int, before: int, spent: int, max_runs: int | None) -> bool:
    return max_runs is not None and spent + _left(n, i, before) > max_runs


def _fitting(
    n: int,
    i: int,
    before: int,
    spent: int,
    elapsed: float,
    time_left: float | None,
    max_runs: int | None,
) -> int:
    """The most candidates (up to ``n``) the rest of the search can take within the runs
    and the time left, at the pace of the runs so far; 0 when not even one fits."""
    per_run = elapsed / spent if spent else 0.0
    for size in range(n, 0, -1):
        late = time_left is not None and per_run * _left(size, i, before) > time_left
        if not late and not _over_runs(size, i, before, spent, max_runs):
            return size
    return 0


Measure = Callable[[list[tuple[Variant, int]]], list[RunRecord]]
Say = Callable[[str], None]


def run(
    race: Race,
    schedule: Schedule,
    measure: Measure,
    *,
    known: Sequence[RunRecord] = (),
    deadline: float | None = None,
    max_runs: int | None = None,
    say: Say = lambda line: None,
    saved: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
) -> Race:
    """Race the candidates through the schedule. ``known`` runs (a resumed search) are
    taken instead of measured again: the seeded order replays the same batches."""
    rng = random.Random(race.seed)
    have = {(r.variant, r.repeat): r for r in known}
    by_name = {c.name: c for c in race.candidates}
    spent = 0

    def take(runs: Sequence[RunRecord]) -> None:
        for r in runs:
            if r.variant == race.baseline.name:
                race.base_runs.append(r)
            elif r.variant in by_name:
                by_name[r.variant].runs.append(r)

    def batch(
        variants: list[Variant], first: int, count: int, enough: Callable[[], bool] | None = None
    ) -> None:
        """Measure in slices of CHUNK runs; ``enough`` (round 1) may end it early."""
        nonlocal spent
        pairs: list[tuple[Variant, int]] = []
        for repeat in range(first, first + count):
            order = rng.sample(variants, len(variants)) if repeat else variants
            pairs += [(v, repeat) for v in order]
        take([have[(v.name, rep)] for v, rep in pairs if (v.name, rep) in have])
        todo = [(v, rep) for v, rep in pairs if (v.name, rep) not in have]
        if enough is not None:  # the baseline first: a round cut short still has it
            todo.sort(key=lambda pair: pair[0] is not race.baseline)
        for at in range(0, len(todo), CHUNK if enough else max(1, len(todo))):
            if at and enough is not None and enough():
                break
            chunk = todo[at : at + (CHUNK if enough else len(todo))]
            began = clock()
            try:
                take(measure(chunk))
            except Interrupted as e:  # what was measured is kept (and saved by the caller)
                take(e.runs)
                raise
            finally:
                race.measuring_s += clock() - began
            spent += len(chunk)
            saved()

    def round_one_spent() -> bool:
        """Round 1 may take ROUND_ONE_SHARE of the budget: the later rounds need the rest."""
        if deadline is None:
            return False
        return clock() - started > ROUND_ONE_SHARE * (deadline - started)

    started = clock()
    batch([race.baseline], 0, 1)  # the warm-up
    before = 0
    sizes = schedule.sizes()
    for i, (n, upto) in enumerate(zip(sizes, TOTALS, strict=True)):
        final = i == len(TOTALS) - 1
        alive = sorted(race.alive(), key=race.score)[:n] if i else race.alive()[:n]
        for c in race.alive():
            if c not in alive:
                c.dropped, c.round_left = "ranked below the survivors", i
        if i:  # shrink this round (the final one too) to what is left to spend
            fits = _fitting(
                len(alive),
                i,
                before,
                spent,
                clock() - started,
                deadline - clock() if deadline is not None else None,
                max_runs,
            )
            if fits == 0:
                spent_what = (
                    "--max-runs" if _over_runs(1, i, before, spent, max_runs) else "--budget"
                )
                race.stopped = f"{spent_what} spent before round {i + 1}"
                break
            for c in alive[fits:]:
                c.dropped, c.round_left = "ranked below the survivors (budget)", i
            alive = alive[:fits]
        elif (
            max_runs is not None and spent + (len(alive) + 1) * upto + _left(1, 1, upto) > max_runs
        ):
            race.stopped = f"--max-runs {max_runs} is too few for round 1"
            break
        add = upto - before
        say(f"round {i + 1}/{len(TOTALS)}: {len(alive)} candidates, {add} run(s) each, "
            "with the baseline, in a seeded order")  # fmt: skip
        batch(
            [race.baseline, *(c.variant for c in alive)],
            before + 1,
            add,
            enough=None if i else round_one_spent,
        )
        before = upto
        for c in alive:
            c.ratios = race.judge(c)
            if not c.runs:
                c.dropped, c.round_left = "not measured: round 1 had spent its share of --budget", 1
            elif not c.counted():
                c.dropped, c.round_left = _failure(c), i + 1
            elif (broken := race.broken_bound(c, final=final)) is not None:
                c.dropped, c.round_left = broken, i + 1
        ranked = sorted((c for c in alive if c.dropped is None), key=race.score)
        race.rounds.append(
            Round(
                number=i + 1,
                runs_each=upto,
                candidates=tuple(c.name for c in alive),
                ranking=tuple(Ranked(c.name, dict(c.ratios)) for c in ranked),
                dropped={c.name: c.dropped for c in alive if c.dropped is not None},
            )
        )
        if ranked:
            best = ranked[0].ratios.get(race.objective.name)
            if best is not None:
                say(f"  best so far: {ranked[0].name}: {race.objective.name} x{best.ratio:.3f} "
                    f"[{best.low:.3f}, {best.high:.3f}] ({best.verdict})")  # fmt: skip
        if not ranked:
            race.stopped = f"no candidate left after round {i + 1}"
            break
    return race
