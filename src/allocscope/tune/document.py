"""The search as a results document: every run of every candidate in compare's format
(``allocscope report`` reads it), the search itself in ``session.tune``."""

from __future__ import annotations

import os
from dataclasses import replace

from allocscope.bench import results as results_mod
from allocscope.bench.record import RunRecord
from allocscope.bench.results import Results, host, libraries_seen, utc_now
from allocscope.bench.results.header import Config, Session, VariantInfo
from allocscope.bench.results.search import Fate, Search
from allocscope.tune.recommend import Decision
from allocscope.tune.search import Race

FILE = "results.json"


def build(
    race: Race,
    runs: list[RunRecord],
    *,
    config: Config,
    search: Search,
    created: str | None = None,
    decision: Decision | None = None,
) -> Results:
    """The document of the search so far: ``search`` is what the plan and the schedule
    said; the race adds its rounds, every candidate's fate and the decision."""
    meta = replace(
        host(),
        libraries=libraries_seen(runs),
        loadavg_after=tuple(round(x, 2) for x in os.getloadavg()),
    )
    fates = tuple(
        Fate(
            variant=c.name,
            spec=search.specs.get(c.name),
            runs=len(c.runs),
            counted=len(c.counted()),
            dropped=c.dropped,
            round_left=c.round_left,
            ratios=dict(c.ratios),
        )
        for c in race.candidates
    )
    search = replace(
        search,
        rounds=tuple(race.rounds),
        stopped=race.stopped,
        candidates=fates,
        decision=decision.record() if decision else None,
    )
    return Results(
        created=created or utc_now(),
        host=meta,
        config=config,
        variants=[
            VariantInfo.of(v) for v in [race.baseline, *(c.variant for c in race.candidates)]
        ],
        runs=runs,
        session=Session(seed=race.seed, tune=search),
    )


def save(results: Results, directory: str) -> None:
    results_mod.save(results, os.path.join(directory, FILE))


def load(directory: str) -> tuple[Results, Search]:
    """A tune's results and its search, to resume; ResultsError when it is not one."""
    res = results_mod.load(os.path.join(directory, FILE))
    if res.session.tune is None:
        raise results_mod.ResultsError(f"{directory}/{FILE} is not from allocscope tune")
    return res, res.session.tune
