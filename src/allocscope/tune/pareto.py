"""The Pareto chart: each candidate's memory against its throughput, both as ratios to the
baseline; the front (no other candidate better on both) joined, the baseline and the
recommendation marked. matplotlib (the [report] extra), Agg, PNG and SVG."""

from __future__ import annotations

import os
from collections.abc import Sequence

from allocscope.tune.search import Race

FORMATS = ("png", "svg")


def points(race: Race) -> list[tuple[str, float, float, bool]]:
    """(name, objective ratio, throughput ratio, finalist) of every candidate judged."""
    finalists = {c.name for c in race.finalists()}
    out = []
    for c in race.candidates:
        obj, thr = c.ratios.get(race.objective.name), c.ratios.get("throughput")
        if obj is not None:
            out.append((c.name, obj.ratio, thr.ratio if thr else 1.0, c.name in finalists))
    return out


def front(pts: Sequence[tuple[str, float, float, bool]]) -> list[tuple[str, float, float, bool]]:
    """Lower memory and higher throughput: the points no other point beats on both."""
    kept = [
        p
        for p in pts
        if not any(q[1] <= p[1] and q[2] >= p[2] and (q[1], q[2]) != (p[1], p[2]) for q in pts)
    ]
    return sorted(kept, key=lambda p: p[1])


def write(race: Race, recommended: str | None, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(race)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    try:
        ax.scatter(
            [p[1] for p in pts if not p[3]],
            [p[2] for p in pts if not p[3]],
            s=18, color="0.6", label="dropped in an early round",
        )  # fmt: skip
        ax.scatter(
            [p[1] for p in pts if p[3]],
            [p[2] for p in pts if p[3]],
            s=40, color="tab:blue", label="finalist",
        )  # fmt: skip
        line = front(pts)
        ax.plot([p[1] for p in line], [p[2] for p in line], color="tab:blue", lw=1, alpha=0.6,
                label="Pareto front")  # fmt: skip
        ax.scatter([1.0], [1.0], marker="s", s=70, color="black",
                   label=f"baseline ({race.baseline.name})")  # fmt: skip
        for name, x, y, _ in pts:
            if name == recommended:
                ax.scatter([x], [y], marker="*", s=260, color="tab:red",
                           label=f"recommended: {name}")  # fmt: skip
        for b in race.bounds:
            if b.figure.name == "throughput":
                ax.axhline(b.limit, color="tab:red", lw=0.8, ls="--", label=f"bound {b}")
        ax.set_xlabel(
            f"{race.objective.name} ({race.objective.metric}) / baseline: lower is better"
        )
        ax.set_ylabel("throughput / baseline: higher is better")
        ax.set_title(f"allocscope tune: {race.workload}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        paths = []
        for fmt in FORMATS:
            path = f"{stem}.{fmt}"
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fig.savefig(path, format=fmt, dpi=110)
            paths.append(path)
        return paths
    finally:
        plt.close(fig)
