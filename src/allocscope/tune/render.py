"""The terminal view of a tune: the ranked candidates with their ratios to the baseline,
the candidates that crashed with their stderr, and the decision."""

from __future__ import annotations

from allocscope.tune.recommend import Decision
from allocscope.tune.search import Race

SHOWN = 25  # candidates in the table (results.json has every one)


def print_table(race: Race, decision: Decision) -> None:
    figures = [race.objective.name, *(b.figure.name for b in race.bounds)]
    figures = list(dict.fromkeys([*figures, "throughput"]))
    rec = decision.recommendation.setting.name if decision.recommendation else None
    ranked = race.finalists() + sorted(
        (c for c in race.candidates if c not in race.finalists() and c.ratios),
        key=lambda c: (-(c.round_left or 0), race.score(c)),
    )
    print(
        f"\nallocscope tune: {race.workload}, baseline {race.baseline.name}, "
        f"{len(race.base_runs)} baseline runs, seed {race.seed}"
    )
    width = max([len("candidate"), *(len(c.name) for c in ranked[:SHOWN])])  # names whole
    head = f"{'candidate':<{width}} {'runs':>4}  " + "  ".join(f"{f:<30}" for f in figures)
    print(head)
    for c in ranked[:SHOWN]:
        cells = []
        for f in figures:
            r = c.ratios.get(f)
            cells.append(
                f"{'-':<30}"
                if r is None
                else f"{f'x{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}] {r.verdict}':<30}"
            )
        mark = (
            "  <- recommended"
            if c.name == rec
            else (f"  (dropped: {c.dropped})" if c.dropped else "")
        )
        print(f"{c.name:<{width}} {len(c.counted()):>4}  " + "  ".join(cells) + mark)
    failed = [c for c in race.candidates if c.dropped and c.dropped.startswith("every run failed")]
    for c in failed:
        print(f"failed: {c.name}: {c.dropped}")
    print(f"\n{decision.reason}")
