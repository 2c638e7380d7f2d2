"""Run a :class:`~allocscope.bench.options.Plan` and gather one results document."""

from __future__ import annotations

import os

from allocscope.bench import runner
from allocscope.bench.options import Plan
from allocscope.bench.results import Results, host, libraries_seen, utc_now


def specs(plan: Plan) -> list[runner.RunSpec]:
    return runner.plan(
        plan.available,
        plan.workloads,
        repeats=plan.repeats,
        warmup=plan.warmup,
        settle=plan.settle,
        timeout=plan.timeout,
        purge=plan.purge,
    )


def execute(plan: Plan, progress: runner.Progress | None = None) -> Results:
    created = utc_now()
    load_before = os.getloadavg()
    run = runner.Runner(interval=plan.interval, serial=plan.serial, progress=progress)
    runs = run.run(specs(plan))
    meta = host()
    meta["libraries"] = libraries_seen(runs)
    # Other work on the machine shows in the wall times: keep the evidence with them.
    meta["loadavg_before"] = [round(x, 2) for x in load_before]
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return Results(
        created=created,
        host=meta,
        config=plan.config(),
        variants=[v.to_dict() for v in plan.variants],
        runs=runs,
    )
