"""What differs per kind of run, behind one interface the session loop drives.

A kind checks what it can before the first run (``prepare``), lays out a batch of runs in
the session's seeded order (``specs``), and runs a batch (``run``), returning one
:class:`RunRecord` per spec with its order and noise. A stop signal inside ``run`` raises
:class:`~allocscope.bench.kinds.workload.runner.Interrupted` carrying the runs done so far.

- :mod:`~allocscope.bench.kinds.workload` (:class:`WorkloadKind`): built-in workloads and
  ``module:function``, in our own worker children;
- :mod:`~allocscope.bench.kinds.process` (:class:`TreeKind`): a user's command or service,
  one process tree at a time, watched from outside.
"""

from __future__ import annotations

import random
from typing import Protocol

from allocscope.bench.kinds.process import Save, TreeKind, TreeSpec
from allocscope.bench.kinds.workload import WorkloadKind, runner
from allocscope.bench.plan import Plan, Workloads
from allocscope.bench.record import RunRecord

__all__ = ["Kind", "Save", "TreeKind", "TreeSpec", "WorkloadKind", "of"]


class Kind(Protocol):
    stopped: str | None  # why fewer runs were made than planned (said in the results)

    def prepare(self) -> None: ...

    def specs(
        self, rng: random.Random, *, repeats: int, warmup: int, first: int = 1, only: str = ""
    ) -> list[runner.Labelled]: ...

    def run(self, specs: list[runner.Labelled]) -> list[RunRecord]: ...


def of(plan: Plan, progress: runner.Progress | None, save: Save, *, quiet: bool) -> Kind:
    if isinstance(plan.work, Workloads):
        return WorkloadKind(plan, progress)
    return TreeKind(plan, progress, save, quiet=quiet)
