"""The one door from tune to the measuring engine (``allocscope.bench``'s one session loop).

tune asks for a batch of ``(variant, repeat)`` runs in its own seeded order and gets their
records back. How a run is made and proved (preloading, the proof of every setting in
every process, RSS sampling, the load, the noise record of each run) is the engine's: the
target is the engine's own checked :class:`~allocscope.bench.plan.Plan` (made by
:func:`allocscope.bench.plan.make`, as ``allocscope.compare`` makes it), and each batch
runs through that plan's *kind* (:mod:`allocscope.bench.kinds`), the object compare's
session loop drives. Repeat 0 is a warm-up.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from allocscope.bench import kinds
from allocscope.bench.kinds.process.kind import TreeSpec
from allocscope.bench.kinds.workload import runner
from allocscope.bench.plan import Plan
from allocscope.bench.record import RunRecord
from allocscope.bench.results.header import Config
from allocscope.bench.variants import Variant

Batch = Sequence[tuple[Variant, int]]
Heard = Callable[[RunRecord], None]


@dataclass(frozen=True)
class Target:
    """What tune measures: the engine's plan for the baseline alone (its kind, work,
    settle periods, sampling interval, timeout); candidates run under the same plan."""

    plan: Plan

    @property
    def kind(self) -> str:
        return self.plan.kind

    @property
    def workload(self) -> str:
        """The label compare gives the work ('fragment', 'cmd: python3 job.py', ...)."""
        template = self._kind(None).specs(random.Random(0), repeats=1, warmup=0)[0]
        assert isinstance(template, runner.RunSpec | TreeSpec)
        return template.workload

    def prepare(self) -> None:
        """What the engine checks before a first run (the command exists, ...)."""
        self._kind(None).prepare()

    def config(self) -> Config:
        # tune's schedule decides these
        return replace(
            self.plan.config(),
            repeats=None,
            warmup=None,
            seed=None,
            repeats_auto=None,
            repeats_default=None,
        )

    def _kind(self, heard: Heard | None) -> kinds.Kind:
        def progress(event: str, spec: runner.Labelled, run: RunRecord | None) -> None:
            if heard is not None and event == "done" and run is not None:
                heard(run)

        return kinds.of(self.plan, progress, lambda runs: None, quiet=True)

    def run(self, batch: Batch, heard: Heard) -> list[RunRecord]:
        """The batch's runs in its order; on a stop signal ``runner.Interrupted`` with
        ``.runs`` the runs done so far."""
        kind = self._kind(heard)
        template = kind.specs(random.Random(0), repeats=1, warmup=0)[0]
        specs = [_spec(template, v, repeat, order) for order, (v, repeat) in enumerate(batch)]
        return kind.run(specs)


def _spec(template: runner.Labelled, variant: Variant, repeat: int, order: int) -> runner.Labelled:
    """The engine's spec of one run, from the one it lays out for the baseline."""
    if isinstance(template, runner.RunSpec):
        spec = replace(template, variant=variant, repeat=repeat, order=order)
        return replace(spec, settle=(), purge=False) if repeat == 0 else spec  # a warm-up
    assert isinstance(template, TreeSpec)
    return replace(template, variant=variant, repeat=repeat, order=order)
