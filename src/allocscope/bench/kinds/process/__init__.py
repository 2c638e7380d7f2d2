"""A user's command or service: one process tree at a time, started under a variant and
watched from outside.

The same kind to the session loop; they differ in one module each:
:mod:`~allocscope.bench.kinds.process.command` (run it, measure it, judge it) and
:mod:`~allocscope.bench.kinds.process.service` (start it, wait until it answers, load it,
let it idle, stop it, with :mod:`~allocscope.bench.kinds.process.load` and
:mod:`~allocscope.bench.kinds.process.listening`). Shared by both:
:mod:`~allocscope.bench.kinds.process.watch` (the environment, the process group, the
samples, stopping), :mod:`~allocscope.bench.kinds.process.tree` (RSS/PSS/CPU of the whole
tree from /proc), :mod:`~allocscope.bench.kinds.process.proof` (which allocator serves malloc
in each process), :mod:`~allocscope.bench.kinds.process.kept` (bounded output) and
:mod:`~allocscope.bench.kinds.process.inject` (the hook inside each Python process).
Each run has its own noise window; the results are saved after each run (and during a long
load).
"""

from __future__ import annotations

import contextlib
import random
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import psutil

from allocscope.bench.analysis import noise
from allocscope.bench.kinds.process import command
from allocscope.bench.kinds.workload import runner
from allocscope.bench.plan import Command, Plan, Service
from allocscope.bench.record import Noise, RunRecord
from allocscope.bench.variants import Variant

Save = Callable[[Sequence[RunRecord]], None]  # the batch so far (the last may be going)


@dataclass(frozen=True)
class TreeSpec:
    """One run of a command or a service."""

    variant: Variant
    workload: str  # the command's short label
    repeat: int  # 0: warm-up
    order: int  # position within its repeat, after shuffling

    @property
    def label(self) -> str:
        which = "warm-up" if self.repeat == 0 else f"run {self.repeat}"
        return f"{self.workload} · {self.variant.name} · {which}"


class TreeKind:
    def __init__(
        self, plan: Plan, progress: runner.Progress | None, save: Save, *, quiet: bool
    ) -> None:
        assert isinstance(plan.work, Command | Service)
        self.plan = plan
        self.work: Command | Service = plan.work
        self.progress = progress or (lambda kind, spec, run: None)
        self.save = save
        self.quiet = quiet

    def prepare(self) -> None:
        """The command (and the load command) exist; a requests file parses."""
        if isinstance(self.work, Service):
            from allocscope.bench.kinds.process import service

            service.check(self.work)
        else:
            command.check_command(self.work.argv)

    def _label(self) -> str:
        if isinstance(self.work, Service):
            return command.label(shlex.split(self.work.command), "serve")
        return command.label(self.work.argv)

    @property
    def names(self) -> list[str]:
        return [self._label()]

    def specs(
        self, rng: random.Random, *, repeats: int, warmup: int, first: int = 1, only: str = ""
    ) -> list[runner.Labelled]:
        label = self._label()
        return [
            TreeSpec(variant, label, repeat, order)
            for repeat, order, variant in runner.shuffled(
                self.plan.available, repeats=repeats, warmup=warmup, rng=rng, first=first
            )
        ]

    def run(self, specs: list[runner.Labelled]) -> list[RunRecord]:
        done: list[RunRecord] = []
        finished: RunRecord | None = None  # measured, not yet in done
        try:
            for spec in specs:
                assert isinstance(spec, TreeSpec)
                self.progress("start", spec, None)
                window = _window()
                finished = replace(self._one(spec, done), order=spec.order)
                finished = replace(finished, noise=_close(window))
                done.append(finished)
                finished = None
                self.save(done)
                self.progress("done", spec, done[-1])
        except runner.Interrupted as e:
            # A signal at any moment: the runs done, one measured but not yet kept, and
            # (from a service) the partial record of the run it stopped.
            e.runs[:0] = [*done, *([finished] if finished is not None else [])]
            raise
        return done

    def _one(self, spec: TreeSpec, done: list[RunRecord]) -> RunRecord:
        plan = self.plan
        if isinstance(self.work, Service):
            from allocscope.bench.kinds.process import service

            return service.run_service(
                self.work,
                spec.variant,
                spec.repeat,
                interval=plan.interval,
                settle=plan.settle,
                save=lambda partial: self.save([*done, partial]),
                quiet=self.quiet,
            )
        return command.run_command(
            command.CommandSpec(
                self.work.argv,
                spec.variant,
                spec.repeat,
                plan.timeout,
                plan.interval,
                spec.variant.trim_every,
            )
        )


def _window() -> noise.Window | None:
    with contextlib.suppress(psutil.Error, OSError):
        return noise.open_window()
    return None


def _close(window: noise.Window | None) -> Noise | None:
    """The run's noise: what processes not ours did meanwhile (the tree has exited)."""
    if window is None:
        return None
    with contextlib.suppress(psutil.Error, OSError):
        return noise.close_window(window, ())
    return None
