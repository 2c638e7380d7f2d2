"""allocscope report: render results files (tables and charts) without running anything."""

from __future__ import annotations

import argparse
import os

from allocscope import exitcodes

HELP = "render a results file: terminal or markdown table, PNG and SVG charts"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        help="results.json from compare or bench; or demo output (bench_alloc.py JSON), "
        "several files allowed",
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown, not a table")
    parser.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help="write report.md, chart.png and chart.svg here (default: print only)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite report.md and charts already in --out"
    )
    parser.add_argument("--no-chart", dest="chart", action="store_false", help="skip charts")
    parser.epilog = (
        "Exit codes: 0 rendered, 2 usage error, 3 unreadable results (missing, not a regular "
        "file, past 256 MiB, truncated, "
        "not JSON, unknown schema version, impossible or mistyped values, one workload with "
        "different parameters, a file or run given twice) or an --out directory that cannot "
        "be written or already holds a report (without --force). Every run's proof is "
        "re-checked against its variant: a run that does not prove it does not count."
    )


def run(args: argparse.Namespace) -> int:
    from allocscope.bench.results import load
    from allocscope.commands import output
    from allocscope.report import bundle, table

    out = os.path.expanduser(args.out) if args.out else None
    if out is not None:
        bundle.check_out(out, force=args.force, data=False)
    results = load(args.results)
    if args.markdown:
        print(table.markdown(results), end="")
    else:
        table.print_terminal(results)
    if out is not None:
        output.write_bundle("report", results, out, data=False, charts=args.chart)
    return exitcodes.OK
