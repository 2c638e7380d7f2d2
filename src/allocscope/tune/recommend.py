"""The decision: one setting to ship, or an honest none, and how to ship it.

A finalist is recommended only when its objective's ratio to the baseline is
*significant* in compare's sense (the whole 99 % interval at least the minimum effect
away from 1, and the rank test agrees) in the better direction, and no bound is broken:
each holds on its median ratio or, past it, is within noise of the baseline. Otherwise
nothing is recommended, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from allocscope.bench.analysis import stats
from allocscope.bench.results.search import Decided, Ratio, Recommended, RunnerUp
from allocscope.tune.search import Candidate, Race
from allocscope.tune.setting import Setting


@dataclass(frozen=True)
class Recommendation:
    setting: Setting
    library: str | None  # the LD_PRELOAD path proved in the runs
    ratios: dict[str, Ratio]  # figure -> ratio, interval, verdict
    runner_up: RunnerUp | None  # the next finalist against this one, if any

    def environ(self) -> dict[str, str]:
        env = {"LD_PRELOAD": self.library} if self.library else {}
        return {**env, **self.setting.env()}

    def record(self) -> Recommended:
        return Recommended(
            name=self.setting.name,
            allocator=self.setting.allocator,
            settings={k: v for k, v in self.setting.values},
            env=self.environ(),
            trim_every_s=self.setting.trim_every,
            spec=self.setting.spec(),
            gains=dict(self.ratios),
            runner_up=self.runner_up,
        )


@dataclass(frozen=True)
class Decision:
    recommendation: Recommendation | None
    reason: str  # why this one, or why none

    def record(self) -> Decided:
        rec = self.recommendation
        return Decided(rec.record() if rec else None, self.reason)


def _better(race: Race, c: Candidate) -> bool:
    r = c.ratios.get(race.objective.name)
    if r is None or r.verdict != "significant":
        return False
    return r.ratio > 1 if race.objective.name == "throughput" else r.ratio < 1


def decide(race: Race, settings: dict[str, Setting]) -> Decision:
    finalists = race.finalists()
    if not finalists:
        why = race.stopped or "no candidate reached the final round"
        return Decision(None, f"no recommendation: {why}")
    winners = [c for c in finalists if _better(race, c)]
    if not winners:
        best = finalists[0]
        r = best.ratios.get(race.objective.name)
        shown = (
            f" (best: {best.name}, x{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}], {r.verdict})"
            if r
            else ""
        )
        return Decision(
            None,
            f"no recommendation: no finalist's {race.objective.name} differs significantly "
            f"from the baseline {race.baseline.name}{shown}",
        )
    best = winners[0]
    runner_up = None
    others = [c for c in finalists if c is not best]
    if others:
        other = others[0]
        metric = race.objective.metric
        base = race.values(best.runs, metric)
        c = stats.compare(
            race.values(other.runs, metric),
            base,
            seed=race.seed,
            key=f"{race.workload}/{other.name}/{metric}",
            kind="time" if metric.endswith("_s") else "memory",
            floor=stats.floor_of(metric, base),
        )
        if c is not None:
            runner_up = RunnerUp(other.name, metric, **c.to_dict())
    r = best.ratios[race.objective.name]
    return Decision(
        Recommendation(settings[best.name], best.variant.library, dict(best.ratios), runner_up),
        f"{best.name}: {race.objective.name} x{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}] "
        f"against {race.baseline.name}, significant; no bound broken",
    )


def _forks(setting: Setting) -> bool:
    """Settings a forking server loses in its workers unless a hook restores them."""
    values = dict(setting.values)
    return values.get("background_thread") is True or setting.trim_every is not None


def snippets(rec: Recommendation, *, kind: str) -> str:
    """Dockerfile, Kubernetes, the fork hook, the CI gate and the compare spec."""
    env = rec.environ()
    lines = ["# Dockerfile", *(f"ENV {k}={json.dumps(v)}" for k, v in env.items()), ""]
    lines += ["# Kubernetes (container spec)", "env:"]
    for k, v in env.items():
        lines += [f"  - name: {k}", f"    value: {json.dumps(v)}"]
    lines.append("")
    if _forks(rec.setting):
        lines += [
            "# a forking Python server (gunicorn, uWSGI, multiprocessing): restore it after fork",
            "#   gunicorn -c python:allocscope.gunicorn_conf app:app",
            "#   or, at start-up: import allocscope.forksafe; allocscope.forksafe.install()",
            "",
        ]
    lines += [
        "# CI gate: fails when the allocator or a MALLOC_CONF key is not in effect",
        f"allocscope verify --allocator {rec.setting.allocator}",
        "",
        "# re-measure it against your baseline with compare",
        f"allocscope compare -V glibc -V '{rec.setting.spec()}' {_target_hint(kind)}",
    ]
    return "\n".join(lines)


def _target_hint(kind: str) -> str:
    return {"workload": "-w WORKLOAD", "command": "-- CMD", "service": "--serve 'CMD {port}' ..."}[
        kind
    ]
