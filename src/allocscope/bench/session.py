"""The one session loop: run a :class:`~allocscope.bench.plan.Plan` of any kind into one
results document.

Every kind (:mod:`allocscope.bench.kinds`) goes through the same steps: checked before
the first run; runs laid out in an order shuffled per repeat by the plan's seed (recorded
in the results, with the bootstrap seeded by it too); warm-ups first; a noise record per
run and one for the whole session; a stop signal ends the session with what was measured
so far (``session['interrupted']``); with a ``path``, the document is saved after every
run of a command or service (and during a long load), so an interrupted soak keeps it.

Every rule about how many runs is here, the same for every kind. Fixed repeats run as
one batch. A command or service without ``--repeats`` runs round by round (each variant
once per round), and once a run has taken ``LONG_RUN`` s or more, stops before a round
that would pass the budget. ``--repeats auto`` runs each piece of work's warm-up and first
repeats, then one more interleaved repeat at a time until the interval of every headline
figure of every variant is within the target, the budget is spent, or the maximum number
of repeats is reached; the results say which, per piece of work (a workload, a command,
a service).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from allocscope.bench import kinds
from allocscope.bench import results as results_mod
from allocscope.bench.analysis import noise
from allocscope.bench.kinds.workload import runner
from allocscope.bench.plan import LONG_RUN, Plan
from allocscope.bench.record import RunRecord
from allocscope.bench.results import HEADLINE, Results, host, libraries_seen, utc_now
from allocscope.bench.results.header import Config, Host, Session, VariantInfo


def prepare(plan: Plan) -> None:
    """Check what can be checked before the first run: the command exists, the requests
    file parses (TargetError, exit 3). ``execute`` does it too; the CLI asks first, before
    it creates the output directory."""
    kinds.of(plan, None, lambda runs: None, quiet=True).prepare()


def specs(plan: Plan, rng: random.Random | None = None) -> list[runner.Labelled]:
    """The first batch of runs (with auto, more may follow): what a progress bar counts."""
    kind = kinds.of(plan, None, lambda runs: None, quiet=True)
    return kind.specs(rng or random.Random(plan.seed), repeats=plan.repeats, warmup=plan.warmup)


@dataclass
class _Session:
    plan: Plan
    kind: kinds.Kind
    rng: random.Random
    runs: list[RunRecord] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)  # workload -> why auto stopped
    cut: str | None = None  # why a command's default rounds stopped before the last

    def batch(self, specs: list[runner.Labelled]) -> None:
        try:
            self.runs += self.kind.run(specs)
        except runner.Interrupted as e:
            self.runs += e.runs
            raise

    def fixed(self, started: float) -> None:
        plan = self.plan
        if not plan.repeats_default:
            self.batch(self.kind.specs(self.rng, repeats=plan.repeats, warmup=plan.warmup))
            return
        # Round by round (the same seeded order as one batch), so the budget can end it.
        self.batch(self.kind.specs(self.rng, repeats=1, warmup=plan.warmup))
        for repeat in range(2, plan.repeats + 1):
            if self.over_budget(repeat, started):
                break
            self.batch(self.kind.specs(self.rng, repeats=1, warmup=0, first=repeat))

    def over_budget(self, repeat: int, started: float) -> bool:
        """Without --repeats: once a run took LONG_RUN s or more, stop if another round
        would pass the budget (never before the first)."""
        plan = self.plan
        longest = max((r.duration_s for r in self.runs), default=0.0)
        spent = time.monotonic() - started
        if longest < LONG_RUN or spent + spent / (repeat - 1) <= plan.budget:
            return False  # rounds so far (warm-ups too) predict the next one
        done = repeat - 1
        self.cut = (
            f"{done} run{'s' if done > 1 else ''} of each variant, not {plan.repeats}: a run "
            f"took {longest:.0f} s and another round would pass the {plan.budget:g} s budget "
            "(--budget S, or --repeats N)"
        )
        return True

    def auto(self, started: float) -> None:
        plan = self.plan
        names = self.kind.names
        for i, name in enumerate(names):
            # Each piece of work may spend the budget left up to its share of the whole.
            deadline = started + plan.budget * (i + 1) / len(names)
            self.batch(
                self.kind.specs(self.rng, repeats=plan.repeats, warmup=plan.warmup, only=name)
            )
            done = plan.repeats
            while True:
                wide = self.too_wide(name)
                if not wide:
                    self.stopped[name] = (
                        f"narrow: every headline interval within ±{plan.precision:.0%}"
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
                more = self.kind.specs(self.rng, repeats=1, warmup=0, first=done + 1, only=name)
                self.batch(more)
                done += 1

    def too_wide(self, workload: str) -> list[str]:
        """'glibc cpu_s ±7%' for every headline interval wider than the target."""
        partial = Results("", Host(), Config(), [], self.runs, session=Session(self.plan.seed))
        wide = []
        for v in self.plan.available:
            for metric in HEADLINE:
                iv = partial.interval(workload, v.name, metric)
                if iv is None:
                    continue  # no run of it counts: more repeats will not help
                if iv.half_width > self.plan.precision:
                    wide.append(f"{v.name} {metric} ±{iv.half_width:.0%}")
        return wide


def execute(
    plan: Plan,
    progress: runner.Progress | None = None,
    *,
    path: str | None = None,
    quiet: bool = True,
) -> Results:
    """Every run of the plan; on a stop signal, the runs so far (session['interrupted']).

    ``path``: results.json, saved as runs of a command or service come in (the caller
    writes the final document). ``quiet``: no progress lines of a long load on stderr."""
    created = utc_now()
    load_before = os.getloadavg()
    window = noise.open_window()
    started = time.monotonic()
    meta = host()

    def document(runs: Sequence[RunRecord], info: Session) -> Results:
        # Other work on the machine shows in the wall times: keep the evidence with them.
        return Results(
            created=created,
            host=replace(
                meta,
                libraries=libraries_seen(runs),
                loadavg_before=tuple(round(x, 2) for x in load_before),
                loadavg_after=tuple(round(x, 2) for x in os.getloadavg()),
            ),
            config=plan.config(),
            variants=[VariantInfo.of(v) for v in plan.variants],
            runs=list(runs),
            session=replace(info, seed=plan.seed),
        )

    def save(batch: Sequence[RunRecord]) -> None:
        if path is not None:
            results_mod.save(document([*session.runs, *batch], Session()), path)

    session = _Session(plan, kinds.of(plan, progress, save, quiet=quiet), random.Random(plan.seed))
    session.kind.prepare()
    interrupted = None
    try:
        session.auto(started) if plan.auto else session.fixed(started)
    except runner.Interrupted as e:
        interrupted = e.args[0]
    measured = [r for r in session.runs if r.repeat > 0]
    info = Session(
        duration_s=round(time.monotonic() - started, 1),
        noise=noise.close_window(window, ()),
        busy_runs=sum(1 for r in measured if r.noise and r.noise.marked),
        measured_runs=len(measured),
        repeats_auto=dict(session.stopped) if plan.auto else None,
        repeats_stopped=session.cut or None,
        interrupted=interrupted or None,
    )
    return document(session.runs, info)
