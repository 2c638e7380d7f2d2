"""Any command, in any language, run under a variant and measured from outside.

``allocscope compare -V glibc -V jemalloc-tuned -- python my_job.py`` runs the command
once per variant (after warm-ups, ``--repeats`` times), samples RSS and PSS of the whole
process tree, proves every process's allocator from outside (and, for Python processes,
from inside through the injected hook), and judges the run: it counts only when every
process ran on the variant's allocator, the loader and jemalloc raised no complaint, the
variant's own setting took effect, and the command exited 0 within ``--timeout``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from allocscope.bench.evidence import Evidence, HookEvents, Trims
from allocscope.bench.kinds.process import tree
from allocscope.bench.kinds.process.watch import Watch
from allocscope.bench.record import RunRecord
from allocscope.bench.variants import Variant, setting_problems
from allocscope.errors import AllocscopeError
from allocscope.probe import jemalloc


class TargetError(AllocscopeError):
    """A command or service that cannot be run at all (bad input, exit 3)."""


def check_command(argv: Sequence[str]) -> tuple[str, ...]:
    """The command, if it can be started: not empty, and its program exists."""
    if not argv or not argv[0].strip():
        raise TargetError("the command after -- is empty")
    program = argv[0]
    if "/" in program:
        if not os.path.isfile(program):
            raise TargetError(f"command not found: {program}")
        if not os.access(program, os.X_OK):
            raise TargetError(f"command is not executable: {program}")
    elif shutil.which(program) is None:
        raise TargetError(f"command not found: {program} (not on PATH)")
    return tuple(argv)


def label(argv: Sequence[str], prefix: str = "cmd", limit: int = 72) -> str:
    """A short name for the command in tables: ``cmd: python3 job.py`` (absolute paths
    shortened to their last part: the full command is in the run's params)."""
    short = [os.path.basename(a) if a.startswith("/") else a for a in argv]
    text = shlex.join(short)
    return f"{prefix}: " + (text if len(text) <= limit else text[: limit - 1] + "…")


@dataclass(frozen=True)
class CommandSpec:
    argv: tuple[str, ...]
    variant: Variant
    repeat: int  # 0: warm-up
    timeout: float
    interval: float
    trim_every: float | None = None

    @property
    def workload(self) -> str:
        return label(self.argv)

    @property
    def label(self) -> str:
        which = "warm-up" if self.repeat == 0 else f"run {self.repeat}"
        return f"{self.workload} · {self.variant.name} · {which}"


def run_command(spec: CommandSpec) -> RunRecord:
    watch = Watch.start(spec.variant, spec.argv, trim_every=spec.trim_every)
    deadline = watch.started + spec.timeout
    failures: list[str] = []
    try:
        while not watch.exited():
            watch.tick()
            if time.monotonic() >= deadline:
                failures.append(f"timed out after {spec.timeout:g} s: process group killed")
                watch.kill()
                break
            time.sleep(spec.interval)
        end = watch.mark("exit")
        watch.stop(grace=0.5)  # anything the command left behind in its group
        return finish_run(
            watch,
            spec.workload,
            spec.repeat,
            failures,
            params={"kind": "command", "argv": list(spec.argv)},
            rss_end=end.rss,
        )
    finally:
        if watch.exit_code is None:
            watch.kill()
        watch.finish()


def restored_after_fork(hook: HookEvents) -> list[str]:
    """The workers whose jemalloc background thread allocscope's hook turned back on."""
    if not hook.restored:
        return []
    count = f"{hook.restored} process{'es' if hook.restored > 1 else ''}"  # evidence.inside
    return [
        f"jemalloc background_thread lost at fork in {count}: restored after fork by "
        f"allocscope (measured as asked; --as-deployed measures without it); "
        f"{jemalloc.FORK_FIX}"
    ]


def finish_run(
    watch: Watch,
    workload: str,
    repeat: int,
    failures: list[str],
    *,
    params: dict[str, Any],
    rss_end: int | None = None,
    metrics: dict[str, float] | None = None,
    extra: Evidence | None = None,
    allow_signal: bool = False,
) -> RunRecord:
    """Judge a watched run and make its record (shared with services). ``rss_end``: the
    tree's RSS at the end (default: its last sample); the wall time runs from its start.
    ``extra``: a service's evidence so far (its tree, load, growth, stop, warnings)."""
    variant = watch.variant
    wall = round(time.monotonic() - watch.started, 3)
    if rss_end is None and watch.tree.last:
        rss_end = watch.tree.last[1]
    stdout, stderr = watch.output()
    hook = watch.hook()
    failures = list(failures)
    failures += [p for p in watch.proof_problems() if p not in failures]
    failures += setting_problems(variant, hook.inside, hook.trims)
    code = watch.exit_code
    signalled = allow_signal and code is not None and code < 0  # a server we stopped
    timed_out = any(f.startswith("timed out") for f in failures)  # we killed it
    said = any("exited with status" in f for f in failures)  # a server that died: said
    if code not in (0, None) and not signalled and not timed_out and not said:
        failures.append(f"the command exited with status {code}")
    cpu = max(watch.tree.cpu_s(), round(watch.cpu_reaped_s, 3))
    values: dict[str, float] = {
        "rss_peak": float(watch.tree.peak_rss),
        "pss_peak": float(watch.tree.peak_pss),
        "cpu_s": cpu,
        "work_s": wall,
        **(metrics or {}),
    }
    if rss_end is not None:
        values.setdefault("rss_end", float(rss_end))
    extra = extra or Evidence(tree=watch.tree.trace())
    warnings = [*extra.warnings, *restored_after_fork(hook)]
    warnings += [e.words() for e in watch.escaped]  # told in the output's notes
    # An event the hook could not have written: what it would say is not known.
    warnings += hook.malformed
    evidence = replace(
        extra,
        processes=tuple(watch.proofs.values()),
        inside=hook.inside,
        exit_heaps=hook.exits,
        stdout=stdout,
        trims=Trims.of(hook.trims),
        escaped=tuple(watch.escaped),
        warnings=tuple(warnings),
    )
    return RunRecord(
        variant=variant.name,
        workload=workload,
        repeat=repeat,
        ok=not failures,
        failures=failures,
        metrics=values if not failures else {},
        marks=watch.marks,
        timeline=tree.rss_timeline(watch.tree.total.points),
        proof=watch.proof(),
        heap=None,
        exit_code=code,
        stderr=stderr[-4000:],
        duration_s=wall,
        params=params,
        kind=str(params["kind"]),
        evidence=evidence,
    )
