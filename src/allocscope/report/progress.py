"""Progress of a benchmark: a rich progress bar on a terminal, one line per run otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from allocscope.bench.kinds.workload.runner import Labelled
from allocscope.bench.record import RunRecord
from allocscope.bench.results import MB


def describe(run: RunRecord) -> str:
    if not run.ok:
        return "FAILED: " + "; ".join(run.failures)
    m = run.metrics
    if run.repeat == 0:
        return f"ok (warm-up, {run.detected})"
    kind = run.kind
    if kind == "command":
        return (
            f"ok {run.detected}: wall {m.get('work_s', 0):.2f} s, peak "
            f"{m.get('rss_peak', 0) / MB:.0f} MiB, end {m.get('rss_end', 0) / MB:.0f} MiB"
        )
    if kind == "service":
        return (
            f"ok {run.detected}: {m.get('rps', 0):.0f} req/s, p99 {m.get('p99_ms', 0):.1f} ms, "
            f"peak {m.get('rss_peak', 0) / MB:.0f} MiB, "
            f"retained {m.get('rss_retained', 0) / MB:.0f} MiB"
        )
    busy = ""
    if run.noise and run.noise.marked:
        busy = f" (busy: {', '.join(run.noise.busy) or f'load {run.noise.load1:g}'})"
    return (
        f"ok {run.detected}: cpu {m.get('cpu_s', 0):.3f} s, wall {m.get('work_s', 0):.3f} s, "
        f"peak {m.get('rss_peak', 0) / MB:.0f} MiB, "
        f"retained {m.get('rss_retained', 0) / MB:.0f} MiB{busy}"
    )


class Progress:
    """A context manager whose :meth:`update` is the runner's progress callback."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.done = 0
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.quiet or not sys.stderr.isatty():
            return self
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            return self
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task("starting", total=self.total)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, value, tb)

    def update(self, kind: str, spec: Labelled, run: RunRecord | None) -> None:
        if kind == "start":
            if self._bar is not None:
                self._bar.update(self._task, description=spec.label)
            return
        self.done += 1
        self.total = max(self.total, self.done)  # --repeats auto adds runs as it goes
        if self._bar is not None:
            self._bar.update(self._task, advance=1, total=self.total)
            if run is not None and not run.ok:
                self._bar.console.print(f"{spec.label}: {describe(run)}", markup=False)
        elif not self.quiet and run is not None:
            elapsed = time.monotonic() - self.started
            print(
                f"[{self.done}/{self.total} {elapsed:5.1f}s] {spec.label}: {describe(run)}",
                file=sys.stderr,
                flush=True,
            )
