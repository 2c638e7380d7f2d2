"""allocscope compare: every available variant on the default workloads (the main job).

Runs warm-up and measured children per variant and workload, prints the comparison table,
and writes results.json, report.md, chart.png and chart.svg into a results directory.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING

from allocscope import exitcodes
from allocscope.bench import options, target_options, workloads
from allocscope.bench.options import Plan, PlanError
from allocscope.commands import output
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
    options.add_arguments(parser, default_workloads=workloads.DEFAULT_SET)
    target_options.add_arguments(parser)
    output.add_arguments(parser, default_out="results/<timestamp>/")
    parser.epilog = EPILOG


def prepare(command: str, args: argparse.Namespace, defaults: tuple[str, ...]) -> Plan:
    """The plan; PlanError when the flags cannot make one."""
    plan = options.build(args, default_workloads=defaults)
    for v in plan.variants:
        if not v.available:
            output.warn(command, f"skipping {v.name}: {v.unavailable}")
    if not plan.available:
        raise PlanError("no variant can run here (see above)")
    return plan


def measure_and_write(command: str, plan: Plan, args: argparse.Namespace, out: str | None) -> int:
    from allocscope.bench import runner, session
    from allocscope.report.progress import Progress

    if out is not None:  # before the runs, not after a minute of them
        output.check_out(out, force=args.force)
    specs = session.specs(plan)
    with runner.stop_on_signals(), Progress(len(specs), quiet=args.quiet) as progress:
        results = session.execute(plan, progress=progress.update)
    return finish(command, results, out, charts=args.chart)


def finish(command: str, results: Results, out: str | None, *, charts: bool) -> int:
    """Print the table, write the files; a stop signal or no proved run ends in an error."""
    from allocscope.report import table

    table.print_terminal(results)
    if out is not None:
        output.write_bundle(command, results, out, charts=charts)
    stopped = results.session.get("interrupted")
    if stopped:
        kept = "the runs done so far are written" if out else "the runs done so far are shown"
        raise AllocscopeError(f"stopped by {stopped}: {kept}", exitcodes.stopped_by(stopped))
    if not any(r.counts for r in results.runs):
        raise AllocscopeError("no run proved its allocator", exitcodes.RUN_FAILED)
    return exitcodes.OK


def run(args: argparse.Namespace) -> int:
    if target_options.wants_target(args):
        # Imported here: it needs psutil ([bench]); the parser must not (a core-only install).
        from allocscope.commands import targets

        return targets.run("compare", args, single=False)
    plan = prepare("compare", args, workloads.DEFAULT_SET)
    out = args.out or os.path.join("results", time.strftime("%Y%m%d-%H%M%S"))
    return measure_and_write("compare", plan, args, out)
