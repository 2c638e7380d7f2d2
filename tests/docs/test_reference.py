"""The hand-written parts of the docs that name things in the code still name real ones."""

from __future__ import annotations

import re

from allocscope import exitcodes
from tests.docs import examples

DOCS = examples.ROOT / "docs"


def test_every_exit_code_in_the_tables_exists() -> None:
    text = (DOCS / "reference" / "exit-codes.md").read_text()
    hand = text.split("## Which failures give which code", 1)[1]
    known = {v for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    for row in re.findall(r"^\| ([\d, ]+) \|", hand, re.M):
        for code in row.split(","):
            value = int(code)
            assert value in known or 128 < value < 160, f"exit code {value} is not in exitcodes.py"


def test_a_shell_session_is_a_console_block() -> None:
    """A block that shows `$ command` and what it printed must be run (or say why not)."""
    for path in examples.documents():
        for example in examples.examples(path):
            first = example.text.lstrip().splitlines()[:1]
            if first and first[0].startswith("$ ") and example.language != "console":
                raise AssertionError(
                    f"{example.id}: a shell session in a {example.language!r} block"
                )
