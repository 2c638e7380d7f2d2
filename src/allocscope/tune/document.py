"""The search as a results document: every run of every candidate in compare's format
(``allocscope report`` reads it), the search itself in ``session.tune``."""

from __future__ import annotations

import os
from typing import Any

from allocscope.bench import results as results_mod
from allocscope.bench.record import RunRecord
from allocscope.bench.results import Results, host, libraries_seen, utc_now
from allocscope.tune.recommend import Decision
from allocscope.tune.search import Race

FILE = "results.json"


def build(
    race: Race,
    runs: list[RunRecord],
    *,
    config: dict[str, Any],
    tune: dict[str, Any],
    created: str | None = None,
    decision: Decision | None = None,
) -> Results:
    meta = host()
    meta["libraries"] = libraries_seen(runs)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    candidates = []
    for c in race.candidates:
        candidates.append(
            {
                "variant": c.name,
                "spec": tune["specs"].get(c.name),
                "runs": len(c.runs),
                "counted": len(c.counted()),
                "dropped": c.dropped,
                "round_left": c.round_left,
                "ratios": {k: r.to_dict() for k, r in c.ratios.items()},
            }
        )
    session = {
        "seed": race.seed,
        "tune": {
            **tune,
            "baseline": race.baseline.name,
            "objective": race.objective.name,
            "bounds": [str(b) for b in race.bounds],
            "rounds": race.rounds,
            "stopped": race.stopped,
            "candidates": candidates,
            "decision": decision.to_dict() if decision else None,
        },
    }
    return Results(
        created=created or utc_now(),
        host=meta,
        config=config,
        variants=[race.baseline.to_dict(), *(c.variant.to_dict() for c in race.candidates)],
        runs=runs,
        session=session,
    )


def save(results: Results, directory: str) -> None:
    results_mod.save(results, os.path.join(directory, FILE))


def load(directory: str) -> Results:
    """A tune's results, to resume; ResultsError when it is not one."""
    res = results_mod.load(os.path.join(directory, FILE))
    if not isinstance(res.session.get("tune"), dict):
        raise results_mod.ResultsError(f"{directory}/{FILE} is not from allocscope tune")
    return res
