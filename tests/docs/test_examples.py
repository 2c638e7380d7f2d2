"""Every docs example that shows output runs here, and prints what the docs say it prints.

See tests/docs/examples.py for the rules (what runs, what is forgiven, the markers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import child_env
from tests.docs import examples

ALL = [e for path in examples.documents() for e in examples.examples(path)]
RUN = [e for e in ALL if e.language in examples.RUN_LANGUAGES and e.not_run is None]
VENV_BIN = str(Path(sys.executable).parent)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = child_env(**extra)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"  # rich tables as wide as the docs show them
    return env


@pytest.mark.parametrize("example", [e for e in RUN if e.language == "console"], ids=lambda e: e.id)
def test_console_example(example: examples.Example, tmp_path: Path) -> None:
    steps = examples.console_steps(example.text)
    cwd = examples.ROOT if example.repo_cwd else tmp_path
    printed = examples.run_console(steps, cwd, _env(example.env), timeout=180)
    outputs = printed.split(examples.SENTINEL + "\n")
    assert len(outputs) == len(steps) + 1, f"the block stopped early:\n{printed}"
    for (command, expected), actual in zip(steps, outputs, strict=False):
        assert examples.matches(expected, actual.splitlines()), (
            f"{example.id}: $ {command}\n--- the docs show:\n"
            + "\n".join(expected)
            + "\n--- it printed:\n"
            + actual
        )


@pytest.mark.parametrize("example", [e for e in RUN if e.language == "pycon"], ids=lambda e: e.id)
def test_pycon_example(example: examples.Example) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = (
            "import sys\n"
            "from tests.docs import examples\n"
            f"sys.stdout.write(examples.run_pycon({example.text!r}, {example.id!r}))\n"
        )
        env = _env(example.env)
        env["PYTHONPATH"] = str(examples.ROOT)
        command = [sys.executable, "-c", script]
        done = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout


def test_every_output_example_runs_or_says_why() -> None:
    """A block that shows output is run, or marked with the reason it cannot be."""
    assert RUN, "no docs example is run"
    for example in ALL:
        if example.language in examples.RUN_LANGUAGES and example.not_run is not None:
            assert len(example.not_run) > 10, f"{example.id}: say why it cannot run on CI"


def test_tolerance_forgives_numbers_not_words() -> None:
    assert examples.matches(["pid 31493 rss 7.8 MiB"], ["pid 12 rss 107.25 MiB"])
    assert examples.matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert examples.matches(["fips  off: the ..."], ["fips off: the provider is off"])
    assert not examples.matches(["allocator jemalloc 5.3.0"], ["allocator glibc 2.36"])
    assert not examples.matches(["exit 0"], ["exit 0", "extra line"])


def test_a_hanging_block_ends_with_everything_it_started(tmp_path: Path) -> None:
    """Interrupted by its timeout, a block leaves nothing running (its sleeper included)."""
    pidfile = tmp_path / "sleeper.pid"
    steps = examples.console_steps(f"$ sleep 300 & echo $! > {pidfile}\n$ sleep 300\n")
    with pytest.raises(subprocess.TimeoutExpired):
        examples.run_console(steps, tmp_path, _env({}), timeout=2)
    sleeper = int(pidfile.read_text())
    assert _ended(sleeper), f"pid {sleeper} still runs"


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for a reaper that is not ours (killed all the same)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False
