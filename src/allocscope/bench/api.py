"""``allocscope.compare``: the Python API under ``allocscope compare`` and ``bench``.

::

    import allocscope

    results = allocscope.compare(["glibc", "jemalloc"], workloads=["fragment"], repeats=5, seed=1)
    for run in results.runs:              # typed records, warm-ups (repeat 0) included
        if run.counts:                    # proved its allocator, not a warm-up
            print(run.variant, run.metrics["rss_retained"], run.metrics["cpu_s"], run.proof)

    allocscope.compare(["glibc", "name=je,lib=jemalloc,env=MALLOC_CONF=narenas:2"],
                       command=["python3", "job.py"], repeats=3)
    allocscope.compare(["glibc", "jemalloc"],
                       service=allocscope.Service("gunicorn -b 127.0.0.1:{port} app:app",
                                                  duration=30))

Exactly one of ``workloads`` (built-in names or ``module:function``), ``command`` and
``service``. Every check the CLI makes is made here (an
:class:`~allocscope.errors.AllocscopeError` names what to change); the CLI is a thin shell
over the same :func:`allocscope.bench.plan.make` and session loop. A stop signal (SIGINT,
SIGTERM, SIGHUP) while measuring ends the session: every child is stopped and the runs so
far are returned, ``results.session.interrupted`` naming the signal.

Per run (:class:`~allocscope.bench.record.RunRecord`): ``metrics`` (bytes and seconds:
``rss_peak``, ``rss_retained`` (at the last ``--settle`` point), ``cpu_s``, ``work_s``; a
service also ``rps``, ``p99_ms``), ``proof`` (what it really ran on, with one check per
process), ``ok`` and ``failures``, ``noise`` (what else the machine did meanwhile),
``order`` within its shuffled repeat, and for a command or service its ``evidence``
(:class:`~allocscope.bench.evidence.Evidence`). ``results.host``, ``.config``,
``.variants`` and ``.session`` are typed too (:mod:`allocscope.bench.results.header`).
``results.comparisons()`` holds the verdicts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Literal, TypedDict

from allocscope.bench.plan import Plan, PlanError, Service, make
from allocscope.bench.variants import Variant, select

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from 3.12; annotations only

    from allocscope.bench.kinds.workload.runner import Progress
    from allocscope.bench.results import Results

__all__ = ["Options", "Service", "compare", "plan", "run"]


class Options(TypedDict, total=False):
    """The keywords of :func:`compare` and :func:`plan`, as :func:`~allocscope.bench.plan.make`
    takes them (its docstring gives each default)."""

    workloads: Sequence[str]
    command: Sequence[str] | None
    service: Service | None
    repeats: int | Literal["auto"] | None
    warmup: int | None
    seed: int | None
    settle: Sequence[float] | None
    interval: float
    timeout: float | None
    serial: bool
    purge: bool
    scale: float
    params: Mapping[str, int] | None
    precision: float
    budget: float
    as_deployed: bool


def plan(variants: Sequence[str | Variant] = (), **options: Unpack[Options]) -> Plan:
    """The checked plan :func:`compare` would run (variants given by name or spec
    string, as ``-V`` takes them; none: the built-in set that can run here)."""
    if not variants:
        resolved = select()
    else:
        resolved = [v if isinstance(v, Variant) else _one(v) for v in variants]
    return make(resolved, **options)


def _one(spec: str) -> Variant:
    (variant,) = select([spec])
    return variant


def run(
    chosen: Plan,
    *,
    out: str | None = None,
    progress: Progress | None = None,
    quiet: bool = True,
) -> Results:
    """Measure ``chosen``; with ``out``, results.json is saved there as runs come in."""
    import os

    from allocscope.bench import session
    from allocscope.bench.kinds.workload import runner

    if not chosen.available:
        why = "; ".join(f"{v.name}: {v.unavailable}" for v in chosen.variants)
        raise PlanError(f"no variant can run here ({why})")
    session.prepare(chosen)
    path = os.path.join(out, "results.json") if out is not None else None
    main = threading.current_thread() is threading.main_thread()  # signals: main thread only
    with _subreaper_restored(), runner.stop_on_signals() if main else nullcontext():
        return session.execute(chosen, progress, path=path, quiet=quiet)


@contextlib.contextmanager
def _subreaper_restored() -> Iterator[None]:
    """A command's runs make this process a child subreaper (bench.orphans); a caller
    that was not one is not left one, or orphans of its later children would become our
    zombies (the runs themselves reap what they adopt)."""
    from allocscope import procctl

    try:
        was = procctl.is_subreaper()
    except (OSError, AttributeError):  # no prctl here: nothing to restore
        was = True
    try:
        yield
    finally:
        if not was:
            with contextlib.suppress(OSError, AttributeError):
                procctl.become_subreaper(False)


def compare(
    variants: Sequence[str | Variant] = (),
    *,
    out: str | None = None,
    progress: Progress | None = None,
    **options: Unpack[Options],
) -> Results:
    """Run ``variants`` on one kind of work and return the typed results (see the module).

    ``out``: also write results.json, report.md and the charts into this directory (it
    must not hold results already)."""
    chosen = plan(variants, **options)
    if out is None:
        return run(chosen, progress=progress)
    from allocscope.report import bundle

    bundle.check_out(out, force=False)
    results = run(chosen, out=out, progress=progress)
    bundle.write(results, out)
    return results
