"""Write a results document and everything rendered from it into one directory."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from allocscope import userfile
from allocscope.bench import results as results_mod
from allocscope.bench.results import Results
from allocscope.errors import AllocscopeError
from allocscope.report import table

RESULTS = "results.json"
MARKDOWN = "report.md"
CHART = "chart"  # chart.png, chart.svg


@dataclass
class Written:
    paths: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. no matplotlib: no charts


def cannot_write(directory: str, e: OSError) -> str:
    where = e.filename if e.filename is not None else directory
    return f"cannot write {where}: {e.strerror or e}"


def occupied(directory: str, *, data: bool = True) -> list[str]:
    """The results files ``directory`` already holds (that :func:`write` would replace)."""
    names = [RESULTS] if data else []
    names += [MARKDOWN, f"{CHART}.png", f"{CHART}.svg"]
    return [n for n in names if os.path.lexists(os.path.join(directory, n))]


def check_out(directory: str, *, force: bool, data: bool = True) -> None:
    """Refuse a directory that already holds results (unless ``force``), or cannot be
    written (AllocscopeError, exit 3); create it otherwise."""
    held = occupied(directory, data=data)
    if held and not force:
        raise AllocscopeError(
            f"{directory} already holds {', '.join(held)}: not overwritten "
            "(use --force to overwrite, or choose another --out)"
        )
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise AllocscopeError(cannot_write(directory, e)) from None
    try:
        with tempfile.TemporaryFile(dir=directory):  # writable (read-only mount, rights)?
            pass
    except OSError as e:
        raise AllocscopeError(f"cannot write {directory}: {e.strerror or e}") from None


def write(results: Results, directory: str, *, data: bool = True, charts: bool = True) -> Written:
    os.makedirs(directory, exist_ok=True)
    out = Written()
    if data:
        path = os.path.join(directory, RESULTS)
        results_mod.save(results, path)
        out.paths.append(path)
    path = os.path.join(directory, MARKDOWN)
    with userfile.replacing(path) as f:
        f.write(table.markdown(results))
    out.paths.append(path)
    if charts:
        from allocscope.report import chart

        try:
            out.paths += chart.write(results, os.path.join(directory, CHART))
        except chart.ChartUnavailable as e:
            out.problems.append(str(e))
    return out
