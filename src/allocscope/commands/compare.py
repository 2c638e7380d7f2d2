"""allocscope compare: every available variant on the default workloads (the main job).

Runs warm-up and measured children per variant and workload, prints the comparison table,
and writes results.json, report.md, chart.png and chart.svg into a results directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from allocscope import exitcodes
from allocscope.bench import options, target_options, workloads
from allocscope.bench.options import Plan, PlanError

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
    add_output_arguments(parser, default_out="results/<timestamp>/")
    parser.epilog = EPILOG


def add_output_arguments(parser: argparse.ArgumentParser, *, default_out: str | None) -> None:
    o = parser.add_argument_group("output")
    o.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help=f"write results.json, report.md, chart.png, chart.svg here (default {default_out})",
    )
    o.add_argument(
        "--force",
        action="store_true",
        help="overwrite the files of an --out directory that already holds results",
    )
    o.add_argument("--no-chart", dest="chart", action="store_false", help="skip PNG and SVG")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def fail(command: str, message: str, code: int) -> int:
    print(f"allocscope {command}: {message}", file=sys.stderr)
    return code


def prepare(command: str, args: argparse.Namespace, defaults: tuple[str, ...]) -> Plan | int:
    """The plan, or an exit code after saying what is wrong."""
    try:
        plan = options.build(args, default_workloads=defaults)
    except PlanError as e:
        return fail(command, str(e), exitcodes.BAD_INPUT)
    for v in plan.variants:
        if not v.available:
            print(f"allocscope {command}: skipping {v.name}: {v.unavailable}", file=sys.stderr)
    if not plan.available:
        return fail(command, "no variant can run here (see above)", exitcodes.BAD_INPUT)
    return plan


def check_out(command: str, out: str, *, force: bool, data: bool = True) -> int:
    """Refuse an --out that already holds results (unless --force), or cannot be written."""
    from allocscope.report import bundle

    held = bundle.occupied(out, data=data)
    if held and not force:
        return fail(
            command,
            f"{out} already holds {', '.join(held)}: not overwritten "
            "(use --force to overwrite, or choose another --out)",
            exitcodes.BAD_INPUT,
        )
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        return fail(command, bundle.cannot_write(out, e), exitcodes.BAD_INPUT)
    try:
        with tempfile.TemporaryFile(dir=out):  # writable (read-only mounts, permissions)?
            pass
    except OSError as e:
        return fail(command, f"cannot write {out}: {e.strerror or e}", exitcodes.BAD_INPUT)
    return exitcodes.OK


def measure_and_write(command: str, plan: Plan, args: argparse.Namespace, out: str | None) -> int:
    from allocscope.bench import runner, session
    from allocscope.report import table
    from allocscope.report.progress import Progress

    if out is not None:  # before the runs, not after a minute of them
        code = check_out(command, out, force=args.force)
        if code != exitcodes.OK:
            return code
    specs = session.specs(plan)
    with runner.stop_on_signals(), Progress(len(specs), quiet=args.quiet) as progress:
        results = session.execute(plan, progress=progress.update)
    table.print_terminal(results)
    if out is not None:
        code = write_bundle(command, results, out, charts=args.chart)
        if code != exitcodes.OK:
            return code
    stopped = results.session.get("interrupted")
    if stopped:
        kept = "the runs done so far are written" if out else "the runs done so far are shown"
        return fail(command, f"stopped by {stopped}: {kept}", exitcodes.stopped_by(stopped))
    if not any(r.counts for r in results.runs):
        return fail(command, "no run proved its allocator", exitcodes.RUN_FAILED)
    return exitcodes.OK


def write_bundle(command: str, results: Results, out: str, **what: bool) -> int:
    """Write the files, say what was written (or why not); BAD_INPUT when it cannot."""
    from allocscope.report import bundle

    try:
        written = bundle.write(results, out, **what)
    except OSError as e:
        return fail(command, bundle.cannot_write(out, e), exitcodes.BAD_INPUT)
    for problem in written.problems:
        print(f"allocscope {command}: {problem}", file=sys.stderr)
    print(f"wrote {', '.join(written.paths)}")
    return exitcodes.OK


def run(args: argparse.Namespace) -> int:
    if target_options.wants_target(args):
        # Imported here: it needs psutil ([bench]); the parser must not (a core-only install).
        from allocscope.commands import targets

        return targets.run("compare", args, single=False)
    plan = prepare("compare", args, workloads.DEFAULT_SET)
    if isinstance(plan, int):
        return plan
    out = args.out or os.path.join("results", time.strftime("%Y%m%d-%H%M%S"))
    return measure_and_write("compare", plan, args, out)
