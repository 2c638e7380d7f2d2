"""Built-in workloads and ``module:function``: our own worker children, driven by the
:class:`~allocscope.bench.kinds.workload.runner.Runner` (one child settles while the next
works; it proves, measures and stops each child itself), written by
:mod:`~allocscope.bench.kinds.workload.worker`.
"""

from __future__ import annotations

import random

from allocscope.bench.kinds.workload import runner
from allocscope.bench.plan import Plan
from allocscope.bench.record import RunRecord


class WorkloadKind:
    def __init__(self, plan: Plan, progress: runner.Progress | None) -> None:
        self.plan = plan
        self.runner = runner.Runner(interval=plan.interval, serial=plan.serial, progress=progress)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.plan.workloads]

    def prepare(self) -> None:
        """Every workload's name and parameters were checked with the plan."""

    def specs(
        self, rng: random.Random, *, repeats: int, warmup: int, first: int = 1, only: str = ""
    ) -> list[runner.Labelled]:
        plan = self.plan
        return list(
            runner.plan(
                plan.available,
                [(n, p) for n, p in plan.workloads if not only or n == only],
                repeats=repeats,
                warmup=warmup,
                settle=plan.settle,
                timeout=plan.timeout,
                purge=plan.purge,
                rng=rng,
                first=first,
            )
        )

    def run(self, specs: list[runner.Labelled]) -> list[RunRecord]:
        return self.runner.run([s for s in specs if isinstance(s, runner.RunSpec)])
