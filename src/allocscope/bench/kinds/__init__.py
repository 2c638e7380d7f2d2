"""What differs per kind of run, behind one interface the session loop drives.

A kind names its pieces of work (``names``: the results' workloads), checks what it can
before the first run (``prepare``), lays out runs in the session's seeded order
(``specs``: warm-ups, then repeats numbered from ``first``, of one piece or all), and runs
a batch (``run``), returning one :class:`RunRecord` per spec with its order and noise. A
stop signal inside ``run`` raises
:class:`~allocscope.bench.kinds.workload.runner.Interrupted` carrying the runs done so far.
Every decision about *how many* runs (fixed repeats, a command's budget once its runs are
long, ``--repeats auto``'s target, budget and maximum) is the session's: a kind runs what
it is given.

- :mod:`~allocscope.bench.kinds.workload` (:class:`WorkloadKind`): built-in workloads and
  ``module:function``, in our own worker children;
- :mod:`~allocscope.bench.kinds.process` (:class:`TreeKind`): a user's command or service,
  one process tree at a time, watched from outside.

Why batches (prepare, specs, run) and not one run's steps (prepare, start, measure, prove,
stop) driven by the session: the steps of a run are not the same moments for every kind.
A worker child proves its allocator from inside and reports each phase over a pipe, and
the runner overlaps children (one settles while the next works) in one event loop; a
command is proved from outside while it runs, as each new process appears; a service is
started, proved, warmed up, loaded, left idle and stopped, and a stop signal must reach
whichever of those it arrives in. Driving those steps from the session would either
serialise the workload children or move each kind's event loop into the session; the
batch is the unit every kind shares.
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
    @property
    def names(self) -> list[str]: ...

    def prepare(self) -> None: ...

    def specs(
        self, rng: random.Random, *, repeats: int, warmup: int, first: int = 1, only: str = ""
    ) -> list[runner.Labelled]: ...

    def run(self, specs: list[runner.Labelled]) -> list[RunRecord]: ...


def of(plan: Plan, progress: runner.Progress | None, save: Save, *, quiet: bool) -> Kind:
    if isinstance(plan.work, Workloads):
        return WorkloadKind(plan, progress)
    return TreeKind(plan, progress, save, quiet=quiet)
