"""One tune from a checked plan: size the search to the budget, race, decide, write.

The plan is built and checked by ``commands/tune.py`` (nothing here sees argparse); the
one warm-up run of the baseline sizes the search to the budget (a budget too small for
the smallest search is refused then, after seconds, not minutes); results are written
after every batch, so an interrupted tune keeps what it measured and can be resumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from allocscope import exitcodes
from allocscope.bench.kinds.workload.runner import Interrupted, stop_on_signals
from allocscope.bench.record import RunRecord
from allocscope.bench.results import Results
from allocscope.bench.results.search import Search, TuneConfig
from allocscope.bench.variants import Libraries, Variant
from allocscope.errors import AllocscopeError
from allocscope.tune import document, recommend, search
from allocscope.tune.measure import Target
from allocscope.tune.objective import Bound, Figure
from allocscope.tune.recommend import Decision
from allocscope.tune.setting import Setting
from allocscope.tune.space import Proof

BUDGET_SHARE = 0.8  # of the budget the schedule is sized for: runs slow down on a busy machine


class BudgetError(AllocscopeError, ValueError):
    exit_code = exitcodes.BAD_INPUT


@dataclass(frozen=True)
class Plan:
    target: Target
    objective: Figure
    bounds: tuple[Bound, ...]
    baseline: Variant
    settings: tuple[Setting, ...]  # the candidates, in the order they are raced
    proof: Proof
    seed: int
    budget_s: float
    budget_text: str  # as the user wrote it ("10m")
    max_runs: int | None
    out: str
    record: dict[str, Any]  # what a --resume needs to rebuild this plan
    known: tuple[RunRecord, ...] = ()  # a resumed tune's runs
    created: str | None = None


@dataclass
class Outcome:
    race: search.Race
    decision: Decision
    results: Results
    interrupted: tuple[str, int] | None = None  # (signal name, exit code)
    runs: list[RunRecord] = field(default_factory=list)  # measured by this invocation


def execute(plan: Plan, say: Callable[[str], None]) -> Outcome:
    libs = Libraries()
    cands = [search.Candidate(s.variant(libs)) for s in plan.settings]
    cands = [c for c in cands if c.variant.available]
    race = search.Race(
        plan.baseline, cands, plan.objective, plan.bounds, plan.seed, plan.target.workload
    )
    search_so_far = Search(
        args=plan.record,
        space=plan.proof.space.to_dict(),
        refused=plan.proof.refused,
        missing=plan.proof.missing,
        budget_s=plan.budget_s,
        max_runs=plan.max_runs,
        specs={s.name: s.spec() for s in plan.settings},
        baseline=plan.baseline.name,
        objective=plan.objective.name,
        bounds=tuple(str(b) for b in plan.bounds),
    )
    config = replace(plan.target.config(), tune=TuneConfig(plan.objective.name, plan.budget_s))
    runs: list[RunRecord] = []
    started = time.monotonic()

    def heard(run: RunRecord) -> None:
        from allocscope.report.progress import describe

        runs.append(run)
        left = max(0.0, plan.budget_s - (time.monotonic() - started))
        say(f"  [{len(runs)}] {run.variant}: {describe(run)} ({left:.0f} s left)")

    def measure(batch: list[tuple[Variant, int]]) -> list[RunRecord]:
        return list(plan.target.run(batch, heard))

    def build(decision: Decision | None = None) -> Results:
        return document.build(race, [*plan.known, *runs], config=config, search=search_so_far,
                              created=plan.created, decision=decision)  # fmt: skip

    interrupted = None
    try:
        with stop_on_signals():
            warm = _warm_up(plan, race, measure, say)
            schedule = _schedule(plan, warm, len(cands))
            race.candidates = cands[: schedule.first]
            search_so_far = replace(
                search_so_far,
                schedule=schedule.record(per_run_s=round(_per_run(warm), 2)),
            )
            say(
                f"searching {schedule.first} of {plan.proof.space.size()} settings (rounds of "
                f"{schedule.sizes()} candidates, ~{schedule.runs()} runs, seed {plan.seed})"
            )
            search.run(
                race,
                schedule,
                measure,
                known=[*plan.known, *warm],
                deadline=started + plan.budget_s,
                max_runs=plan.max_runs,
                say=say,
                saved=lambda: document.save(build(), plan.out),
            )
    except Interrupted as e:
        interrupted = (str(e.args[0]), e.exit_code)
    decision = recommend.decide(race, {s.name: s for s in plan.settings})
    search_so_far = replace(
        search_so_far,
        duration_s=round(time.monotonic() - started, 1),
        runs_measured=len(runs),
        measuring_s=round(race.measuring_s, 1),  # the rest is the search's own
    )
    results = build(decision)
    document.save(results, plan.out)
    return Outcome(race, decision, results, interrupted, runs)


def _warm_up(
    plan: Plan,
    race: search.Race,
    measure: Callable[[list[tuple[Variant, int]]], list[RunRecord]],
    say: Callable[[str], None],
) -> list[RunRecord]:
    """The baseline's warm-up run (a resumed tune has it): it sizes the search."""
    warm = [r for r in plan.known if r.variant == plan.baseline.name and r.repeat == 0]
    if warm:
        return warm
    say(f"warm-up: {plan.baseline.name} (to size the search to --budget {plan.budget_text})")
    began = time.monotonic()
    warm = measure([(plan.baseline, 0)])
    race.measuring_s += time.monotonic() - began
    return warm


def _per_run(warm: list[RunRecord]) -> float:
    return max(0.5, max((r.duration_s for r in warm), default=0.5))


def _schedule(plan: Plan, warm: list[RunRecord], candidates: int) -> search.Schedule:
    per_run = _per_run(warm)
    affordable = int(plan.budget_s / per_run * BUDGET_SHARE)
    if plan.max_runs is not None:
        affordable = min(affordable, plan.max_runs)
    schedule = search.fit(affordable, candidates)
    if schedule is None:
        smallest = search.Schedule(1).runs()
        raise BudgetError(
            f"--budget {plan.budget_text} is too small for one search: a run takes "
            f"~{per_run:.1f} s and the smallest search takes {smallest} runs "
            f"(~{smallest * per_run / BUDGET_SHARE:.0f} s with room for a busy machine)"
        )
    return schedule
