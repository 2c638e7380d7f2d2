"""Run a :class:`~allocscope.bench.options.Plan` and gather one results document.

Fixed repeats run as one batch (one child settles while the next works). ``--repeats
auto`` runs each workload's warm-up and first repeats, then one more interleaved repeat
at a time until the interval of every headline figure of every variant is within the
target, the budget is spent, or the maximum number of repeats is reached; the results
say which, per workload. A stop signal ends the session with what was measured so far.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from allocscope.bench import noise, runner
from allocscope.bench.options import Plan
from allocscope.bench.record import RunRecord
from allocscope.bench.results import HEADLINE, Results, host, libraries_seen, utc_now


def specs(plan: Plan, rng: random.Random | None = None) -> list[runner.RunSpec]:
    """The first batch of runs (with auto, more may follow)."""
    return runner.plan(
        plan.available,
        plan.workloads,
        repeats=plan.repeats,
        warmup=plan.warmup,
        settle=plan.settle,
        timeout=plan.timeout,
        purge=plan.purge,
        rng=rng or random.Random(plan.seed),
    )


@dataclass
class _Session:
    plan: Plan
    runs_with: runner.Runner
    rng: random.Random
    runs: list[RunRecord] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)  # workload -> why auto stopped

    def batch(self, specs: list[runner.RunSpec]) -> None:
        try:
            self.runs += self.runs_with.run(specs)
        except runner.Interrupted as e:
            self.runs += e.runs
            raise

    def fixed(self) -> None:
        self.batch(specs(self.plan, self.rng))

    def auto(self, started: float) -> None:
        plan = self.plan
        for i, (name, params) in enumerate(plan.workloads):
            # Each workload may spend the budget left up to its share of the whole.
            deadline = started + plan.budget * (i + 1) / len(plan.workloads)
            self.batch(self._round(name, params, plan.warmup, plan.repeats, 1))
            done = plan.repeats
            while True:
                wide = self.too_wide(name)
                if not wide:
                    self.stopped[name] = (
                        f"narrow: every headline interval within ±{plan.target:.0%}"
                    )
                    break
                if done >= plan.max_repeats:
                    self.stopped[name] = f"max repeats ({done}); still wide: {', '.join(wide)}"
                    break
                if time.monotonic() >= deadline:
                    self.stopped[name] = (
                        f"budget spent after {done} repeats; still wide: {', '.join(wide)}"
                    )
                    break
                self.batch(self._round(name, params, 0, 1, done + 1))
                done += 1

    def _round(
        self, name: str, params: Any, warmup: int, repeats: int, first: int
    ) -> list[runner.RunSpec]:
        plan = self.plan
        return runner.plan(
            plan.available,
            [(name, params)],
            repeats=repeats,
            warmup=warmup,
            settle=plan.settle,
            timeout=plan.timeout,
            purge=plan.purge,
            rng=self.rng,
            first=first,
        )

    def too_wide(self, workload: str) -> list[str]:
        """'glibc cpu_s ±7%' for every headline interval wider than the target."""
        partial = Results("", {}, {}, [], self.runs, session={"seed": self.plan.seed})
        wide = []
        for v in self.plan.available:
            for metric in HEADLINE:
                iv = partial.interval(workload, v.name, metric)
                if iv is None:
                    continue  # no run of it counts: more repeats will not help
                if iv.half_width > self.plan.target:
                    wide.append(f"{v.name} {metric} ±{iv.half_width:.0%}")
        return wide


def execute(plan: Plan, progress: runner.Progress | None = None) -> Results:
    """Every run of the plan; on a stop signal, the runs so far (session['interrupted'])."""
    created = utc_now()
    load_before = os.getloadavg()
    window = noise.open_window()
    started = time.monotonic()
    session = _Session(
        plan,
        runner.Runner(interval=plan.interval, serial=plan.serial, progress=progress),
        random.Random(plan.seed),
    )
    interrupted = None
    try:
        session.auto(started) if plan.auto else session.fixed()
    except runner.Interrupted as e:
        interrupted = e.args[0]
    meta = host()
    meta["libraries"] = libraries_seen(session.runs)
    # Other work on the machine shows in the wall times: keep the evidence with them.
    meta["loadavg_before"] = [round(x, 2) for x in load_before]
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    measured = [r for r in session.runs if r.repeat > 0]
    info: dict[str, Any] = {
        "seed": plan.seed,
        "duration_s": round(time.monotonic() - started, 1),
        "noise": noise.close_window(window, ()).to_dict(),
        "busy_runs": sum(1 for r in measured if r.noise and r.noise.marked),
        "measured_runs": len(measured),
    }
    if plan.auto:
        info["repeats_auto"] = session.stopped
    if interrupted:
        info["interrupted"] = interrupted
    return Results(
        created=created,
        host=meta,
        config=plan.config(),
        variants=[v.to_dict() for v in plan.variants],
        runs=session.runs,
        session=info,
    )
