"""The hand-written parts of the docs that name things in the code still name real ones."""

from __future__ import annotations

from tests.docs import examples


def test_a_shell_session_is_a_console_block() -> None:
    """A block that shows `$ command` and what it printed must be run (or say why not)."""
    for path in examples.documents():
        for example in examples.examples(path):
            first = example.text.lstrip().splitlines()[:1]
            if first and first[0].startswith("$ ") and example.language != "console":
                raise AssertionError(
                    f"{example.id}: a shell session in a {example.language!r} block"
                )
