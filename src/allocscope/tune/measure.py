"""The one door from tune to the measuring engine.

tune asks for a batch of ``(variant, repeat)`` runs in a given order and gets their
records back; everything about how a run is made and proved (preloading, proof of every
setting in every process, RSS sampling, load) is the engine's. Repeat 0 is a warm-up.

Built-in workloads go to ``bench.runner`` as compare's do; commands and services through
the session loop's own kind (``bench.kinds.TreeKind``), given tune's order.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from allocscope.bench import plan, runner
from allocscope.bench.record import RunRecord
from allocscope.bench.variants import Variant
from allocscope.bench.workloads import Params

Batch = Sequence[tuple[Variant, int]]
Heard = Callable[[RunRecord], None]


class Target(Protocol):
    kind: str

    @property
    def workload(self) -> str: ...

    def config(self) -> dict[str, Any]: ...

    def run(self, batch: Batch, heard: Heard) -> list[RunRecord]:
        """The batch's runs in its order; on a stop signal ``runner.Interrupted`` with
        ``.runs`` the runs done so far."""
        ...


@dataclass(frozen=True)
class Workload:
    name: str
    params: Params
    settle: tuple[float, ...] = (0.5, 2.0)
    timeout: float = 120.0
    interval: float = 0.05
    purge: bool = False  # the figures tune judges need no purge; it costs a pass
    kind: str = "workload"

    @property
    def workload(self) -> str:
        return self.name

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "workloads": {self.name: self.params.to_dict()},
            "settle_s": list(self.settle),
            "interval_s": self.interval,
            "timeout_s": self.timeout,
        }

    def run(self, batch: Batch, heard: Heard) -> list[RunRecord]:
        specs = [
            runner.RunSpec(
                v,
                self.name,
                self.params,
                self.settle if repeat else (),
                repeat,
                self.timeout,
                purge=self.purge and repeat > 0,
                order=i,
            )
            for i, (v, repeat) in enumerate(batch)
        ]

        def progress(event: str, spec: runner.Labelled, run: RunRecord | None) -> None:
            if event == "done" and run is not None:
                heard(run)

        return runner.Runner(interval=self.interval, progress=progress).run(specs)


@dataclass(frozen=True)
class _OneByOne:
    """Commands and services run one at a time, through the session loop's own kind
    (bench.kinds.TreeKind): the same runs as compare's, each with its noise record."""

    def plan(self) -> plan.Plan:
        raise NotImplementedError

    def run(self, batch: Batch, heard: Heard) -> list[RunRecord]:
        from allocscope.bench import kinds

        def progress(event: str, spec: runner.Labelled, run: RunRecord | None) -> None:
            if event == "done" and run is not None:
                heard(run)

        kind = kinds.TreeKind(self.plan(), progress, lambda runs: None, quiet=True)
        return kind.run(kind.batch(batch))


@dataclass(frozen=True)
class Command(_OneByOne):
    argv: tuple[str, ...] = ()
    timeout: float = 3600.0
    interval: float = 0.1
    kind: str = "command"

    @property
    def workload(self) -> str:
        from allocscope.bench.target import label

        return label(self.argv)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "argv": list(self.argv), "timeout_s": self.timeout}

    def plan(self) -> plan.Plan:
        return plan.make([], command=self.argv, repeats=1, timeout=self.timeout,
                         interval=self.interval)  # fmt: skip


@dataclass(frozen=True)
class Service(_OneByOne):
    opts: plan.Service | None = None
    interval: float = 0.1
    settle: tuple[float, ...] = plan.SERVICE_SETTLE  # RSS reads after the load
    kind: str = "service"

    @property
    def workload(self) -> str:
        from allocscope.bench.target import label

        assert self.opts is not None
        return label(shlex.split(self.opts.command), "serve")

    def config(self) -> dict[str, Any]:
        assert self.opts is not None
        return {"kind": self.kind, "serve": self.opts.to_dict(), "settle_s": list(self.settle)}

    def plan(self) -> plan.Plan:
        return plan.make([], service=self.opts, repeats=1, settle=self.settle,
                         interval=self.interval)  # fmt: skip
