"""Exit codes: the package's table is the one truth; the docs and the launcher follow it."""

from __future__ import annotations

import re
from pathlib import Path

from allocscope import exitcodes
from allocscope.service import launch

ROOT = Path(__file__).resolve().parents[2]


def _package_codes() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(exitcodes).items()
        if name.isupper() and isinstance(value, int)
    }


def _documented_codes() -> set[int]:
    """Every code in the first column of the docs' table of which failure gives which code."""
    text = (ROOT / "docs" / "reference" / "exit-codes.md").read_text(encoding="utf-8")
    table = text.split("## Which failures give which code", 1)[1].split("\n\n", 2)[1]
    codes: set[int] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        codes |= {int(c) for c in re.findall(r"\d+", first)}
    return codes


def test_the_docs_document_every_exit_code_and_no_other() -> None:
    signals = {exitcodes.stopped_by("SIGHUP"), exitcodes.stopped_by("SIGTERM")}
    assert _documented_codes() == set(_package_codes().values()) | signals


def test_the_launcher_mirrors_every_code_it_shares_with_the_package() -> None:
    # launch.py cannot import allocscope (it runs before the vendor dir is on the path).
    package = _package_codes()
    mirrored = {n: v for n, v in vars(launch).items() if n in package and isinstance(v, int)}
    assert mirrored == {n: package[n] for n in mirrored}
    launcher_codes = {n for n, v in package.items() if 100 < v < 128}  # the launcher's own
    assert launcher_codes <= set(mirrored), launcher_codes - set(mirrored)
