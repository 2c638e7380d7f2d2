"""The output flags and files of ``bench``, ``compare`` and ``report``: one place for all.

Errors are raised (``AllocscopeError``, exit 3): ``cli.main`` prints them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from allocscope.errors import AllocscopeError

if TYPE_CHECKING:
    from allocscope.bench.results import Results


def add_arguments(parser: argparse.ArgumentParser, *, default_out: str | None) -> None:
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


def write_bundle(command: str, results: Results, out: str, **what: bool) -> None:
    """Write the files and say what was written (a missing chart library is a warning)."""
    from allocscope.report import bundle

    try:
        written = bundle.write(results, out, **what)
    except OSError as e:
        raise AllocscopeError(bundle.cannot_write(out, e)) from None
    for problem in written.problems:
        warn(command, problem)
    print(f"wrote {', '.join(written.paths)}")


def warn(command: str, message: str) -> None:
    """A line on stderr that is not the end of the command (a skipped variant, ...)."""
    print(f"allocscope {command}: {message}", file=sys.stderr)
