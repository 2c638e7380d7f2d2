"""CPython's object allocator is measured in real interpreters, not read from PYTHONMALLOC
(issue 9 item 5): ``-E`` and ``-I`` ignore the variable, ``-X dev`` adds debug hooks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import child_env

MEASURE = (
    "import dataclasses, json; from allocscope.probe import pymem; "
    "print(json.dumps(dataclasses.asdict(pymem.measure())))"
)

# (interpreter flags, PYTHONMALLOC) -> (allocator, debug hooks, words in the detail)
CASES: dict[str, tuple[tuple[str, ...], str | None, str, bool]] = {
    "default": ((), None, "pymalloc", False),
    "PYTHONMALLOC=malloc": ((), "malloc", "malloc", False),
    "-E ignores PYTHONMALLOC=malloc": (("-E",), "malloc", "pymalloc", False),
    "-I ignores PYTHONMALLOC=malloc": (("-I",), "malloc", "pymalloc", False),
    "PYTHONMALLOC=debug": ((), "debug", "pymalloc", True),
    "PYTHONMALLOC=malloc_debug": ((), "malloc_debug", "malloc", True),
    "PYTHONMALLOC=pymalloc_debug": ((), "pymalloc_debug", "pymalloc", True),
    "-X dev": (("-X", "dev"), None, "pymalloc", True),
    "-X dev with PYTHONMALLOC=malloc": (("-X", "dev"), "malloc", "malloc", False),
    "-X tracemalloc with PYTHONMALLOC=malloc": (("-X", "tracemalloc"), "malloc", "malloc", False),
}


def measure(flags: tuple[str, ...], pythonmalloc: str | None) -> dict[str, object]:
    env = child_env(**({"PYTHONMALLOC": pythonmalloc} if pythonmalloc else {}))
    # -E and -I still find allocscope: the venv's site-packages (and its editable .pth)
    # comes from the interpreter's location, not from the environment.
    proc = subprocess.run(
        [sys.executable, *flags, "-c", MEASURE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


@pytest.mark.parametrize("case", list(CASES))
def test_python_allocator_is_measured(case: str) -> None:
    flags, pythonmalloc, name, debug = CASES[case]
    got = measure(flags, pythonmalloc)
    assert (got["name"], got["debug_hooks"]) == (name, debug), got


def test_tracemalloc_is_seen_through() -> None:
    got = measure(("-X", "tracemalloc"), None)
    assert got["name"] == "pymalloc"
    assert "traced by tracemalloc" in str(got["detail"])


def test_info_says_when_pythonmalloc_is_not_in_effect() -> None:
    proc = subprocess.run(
        [sys.executable, "-E", "-m", "allocscope", "info"],
        env=child_env(PYTHONMALLOC="malloc"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    said = json.loads(proc.stdout)["allocator"]["python_allocator"]
    assert said.startswith("pymalloc")
    assert "PYTHONMALLOC=malloc is set but not in effect" in said


@pytest.mark.parametrize(
    ("value", "wanted"),
    [(None, None), ("", None), ("default", None), ("debug", ("pymalloc", True)),
     ("malloc", ("malloc", False)), ("mimalloc_debug", ("mimalloc", True))],
)  # fmt: skip
def test_declared_reads_pythonmalloc(value: str | None, wanted: object) -> None:
    from allocscope.probe import pymem

    assert pymem.declared(value) == wanted
