"""allocscope compare: every available variant on the default workloads (the main job),
or on the user's own command (``-- CMD``) or service (``--serve``).

Runs warm-up and measured runs per variant in a seeded shuffled order, prints the
comparison table, and writes results.json, report.md, chart.png and chart.svg into a
results directory. A thin shell: flags -> Plan (``flags.plan_from``), then the library
(``allocscope.bench.api.run``), then the table and files.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING

from allocscope import exitcodes
from allocscope.bench import workloads
from allocscope.bench.plan import Plan, PlanError
from allocscope.commands import flags, output
from allocscope.errors import AllocscopeError

if TYPE_CHECKING:
    from allocscope.bench.results import Results

HELP = "compare allocator variants on workloads: table, JSON, PNG and SVG (the main job)"
EPILOG = (
    "Exit codes: 0 done (failed runs are listed in the table), 2 usage error, "
    "3 invalid input (unknown variant or workload, bad library, bad value, "
    "an output directory that cannot be written or already holds results without --force), "
    "4 no run proved its allocator, 128+N stopped by signal N (129 SIGHUP, 130 SIGINT, "
    "143 SIGTERM) after writing the runs done so far."
)


def configure(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, default_workloads=workloads.DEFAULT_SET)
    output.add_arguments(parser, default_out="results/<timestamp>/")
    parser.epilog = EPILOG


def measure(command: str, plan: Plan, args: argparse.Namespace, out: str | None) -> int:
    """Measure the plan, print and write what it found; the exit code."""
    # Imported here: they need psutil ([bench]); the parser must not (a core-only install).
    from allocscope.bench import api, session
    from allocscope.report import bundle
    from allocscope.report.progress import Progress

    for v in plan.variants:
        if not v.available:
            output.warn(command, f"skipping {v.name}: {v.unavailable}")
    if not plan.available:
        raise PlanError("no variant can run here (see above)")
    session.prepare(plan)  # a command that is not there: said before --out is created
    if out is not None:
        bundle.check_out(out, force=args.force)
    with Progress(len(session.specs(plan)), quiet=args.quiet) as progress:
        results = api.run(plan, out=out, progress=progress.update, quiet=args.quiet)
    return finish(command, results, out, charts=args.chart)


def finish(command: str, results: Results, out: str | None, *, charts: bool) -> int:
    """Print the table, write the files; a stop signal or no proved run ends in an error."""
    from allocscope.report import table

    table.print_terminal(results)
    if out is not None:
        output.write_bundle(command, results, out, charts=charts)
    stopped = results.session.interrupted
    if stopped:
        kept = "the runs done so far are written" if out else "the runs done so far are shown"
        raise AllocscopeError(f"stopped by {stopped}: {kept}", exitcodes.stopped_by(stopped))
    if not any(r.counts for r in results.runs):
        raise AllocscopeError("no run proved its allocator", exitcodes.RUN_FAILED)
    return exitcodes.OK


def run(args: argparse.Namespace) -> int:
    plan = flags.plan_from(args, default_workloads=workloads.DEFAULT_SET)
    out = args.out or os.path.join("results", time.strftime("%Y%m%d-%H%M%S"))
    return measure("compare", plan, args, out)
