"""Run commands and services under each variant into one results document.

Results are written as they come (after every run, and during a long service run at
every progress tick), so an interrupted soak keeps everything measured so far.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from allocscope.bench import results as results_mod
from allocscope.bench.results import Results, Run, host, utc_now
from allocscope.bench.variants import Variant


class TargetSpec(Protocol):
    variant: Variant
    repeat: int

    @property
    def label(self) -> str: ...

    @property
    def workload(self) -> str: ...


Progress = Callable[[str, Any, Run | None], None]


@dataclass
class Session:
    """One results document filled run by run; ``save`` after each, if ``path``."""

    variants: list[Variant]
    config: dict[str, Any]
    path: str | None
    results: Results | None = None

    def __post_init__(self) -> None:
        meta = host()
        meta["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
        self.results = Results(
            created=utc_now(),
            host=meta,
            config=self.config,
            variants=[v.to_dict() for v in self.variants],
            runs=[],
        )

    def add(self, run: Run) -> None:
        assert self.results is not None
        self.results.runs.append(run)
        self.save()

    def save(self, partial: Run | None = None) -> None:
        """Write the document; ``partial`` is a run still going (a soak in progress)."""
        assert self.results is not None
        self.results.host["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        self.results.host["libraries"] = results_mod.libraries_seen(self.results.runs)
        if self.path is None:
            return
        doc = self.results
        if partial is not None:
            doc = Results(**{**doc.__dict__, "runs": [*doc.runs, partial]})
        results_mod.save(doc, self.path)


def plan(variants: Sequence[Variant], repeats: int, warmup: int) -> list[tuple[Variant, int]]:
    """(variant, repeat) pairs, variants interleaved; repeat 0 is a warm-up."""
    ready = [v for v in variants if v.available]
    pairs = [(v, 0) for _ in range(warmup) for v in ready]
    return pairs + [(v, r) for r in range(1, repeats + 1) for v in ready]
