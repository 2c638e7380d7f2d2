"""The docs' examples that show output, found, run and compared with what they show.

Two kinds of fenced block show output, and only these are run:

- ```` ```console ````: a shell session. Lines starting with ``$ `` are commands (a line
  ending in ``\\`` continues on the next); the lines after a command, up to the next one,
  are what it printed (stdout and stderr together). The block runs as one bash script, so
  ``sleep 20 &`` then ``allocscope inspect $!`` works.
- ```` ```pycon ````: a Python session (``>>>``/``...`` and the printed output), run with
  doctest in a fresh interpreter.

The comparison forgives what changes from run to run and machine to machine: every number
(pids, sizes, times, versions' digits) matches any number, runs of spaces match any
spacing, a line ``...`` matches any number of lines, and a line ending in ``...`` matches
any line that starts with the same text.

An HTML comment right before a block tunes it: ``<!-- example: not-run REASON -->`` shows
it without running it (REASON is required: why a CI machine cannot run it);
``<!-- example: cwd=repo -->`` runs it in the repository instead of an empty directory;
``<!-- example: env=NAME=VALUE ... -->`` sets variables (pycon blocks). Blocks of other
languages (``sh``, ``python``, ``text``, ...) show code or output without claiming both,
and are not run.
"""

from __future__ import annotations

import contextlib
import doctest
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LANGUAGES = ("console", "pycon")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w-]*)[^\n]*$")
_MARKER = re.compile(r"<!--\s*example:\s*(?P<body>.*?)\s*-->", re.S)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # a sign stays: "Linux-6.1" keeps its dash


@dataclass(frozen=True)
class Example:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str  # the block's content, dedented
    not_run: str | None = None  # the reason, when marked not-run
    repo_cwd: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _marker(lines: list[str], fence_index: int) -> str | None:
    """The `<!-- example: ... -->` comment just above a fence (blank lines allowed)."""
    i = fence_index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    if i < 0 or not lines[i].rstrip().endswith("-->"):
        return None
    j = i
    while j >= 0 and "<!--" not in lines[j]:
        j -= 1
    found = _MARKER.search("\n".join(lines[j : i + 1]))
    return found["body"] if found else None


def parse_marker(body: str | None) -> tuple[str | None, bool, dict[str, str]]:
    """(not-run reason, run in the repo, extra environment) from a marker's body."""
    if body is None:
        return None, False, {}
    if body.startswith("not-run"):
        reason = body.removeprefix("not-run").strip(" :")
        if not reason:
            raise ValueError("an example marked not-run must say why")
        return reason, False, {}
    repo, env = False, {}
    for word in body.split():
        if word == "cwd=repo":
            repo = True
        elif word.startswith("env="):
            name, _, value = word.removeprefix("env=").partition("=")
            env[name] = value
        else:
            raise ValueError(f"unknown example option {word!r}")
    return None, repo, env


def examples(path: Path) -> list[Example]:
    """Every fenced block of a Markdown file, with its marker (nested fences included)."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = i + 1
        while end < len(lines) and not re.match(
            rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]
        ):
            end += 1
        block = lines[i + 1 : end]
        body = [line[len(indent) :] if line.startswith(indent) else line for line in block]
        reason, repo, env = parse_marker(_marker(lines, i))
        found.append(Example(path, i + 1, opening["lang"], "\n".join(body), reason, repo, env))
        i = end + 1
    return found


def documents() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
    return [ROOT / "README.md", *docs]


# --- console blocks -----------------------------------------------------------------------


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$ `` command of a console block."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if not steps:
                raise ValueError(f"output before the first command: {line!r}")
            steps[-1][1].append(line)
            i += 1
            continue
        command = [line[2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        steps.append(("\n".join(command), []))
        i += 1
    return steps


def normalise(line: str) -> str:
    """Numbers as '#', spacing as one space: what may differ between two honest runs."""
    return " ".join(_NUMBER.sub("#", line).split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Expected lines against actual ones, with ``...`` lines and ``...`` line ends."""
    want = [normalise(line) for line in expected]
    got = [normalise(line) for line in actual]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()

    def match(w: int, g: int) -> bool:
        if w == len(want):
            return g == len(got)
        if want[w] == "...":
            return any(match(w + 1, k) for k in range(g, len(got) + 1))
        if g == len(got):
            return False
        line = want[w]
        if line.endswith("...") and got[g].startswith(line[:-3].rstrip()):
            return match(w + 1, g + 1)
        return line == got[g] and match(w + 1, g + 1)

    return match(0, 0)


SENTINEL = "@@allocscope-docs-example-step@@"


def console_script(steps: list[tuple[str, list[str]]]) -> str:
    """One bash script for a block: each command, then a line that separates the outputs."""
    parts = ["trap 'kill $(jobs -p) 2>/dev/null' EXIT"]
    for command, _ in steps:
        parts += [command, f"echo {SENTINEL}"]
    return "\n".join(parts) + "\n"


def run_console(
    steps: list[tuple[str, list[str]]], cwd: Path, env: dict[str, str], timeout: float
) -> str:
    """Run a block's commands; what they printed, steps separated by :data:`SENTINEL`.

    The block runs in its own session: whatever it started (a server, a sleeper) is killed
    with it when it ends, and when it hangs past ``timeout`` (then TimeoutExpired).
    """
    block = subprocess.Popen(
        ["bash", "-c", console_script(steps)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        printed, _ = block.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(block.pid, signal.SIGKILL)
        block.communicate()
    return printed


# --- pycon blocks -------------------------------------------------------------------------


class TolerantChecker(doctest.OutputChecker):
    """doctest's checker with the same forgiveness as the console blocks."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        if super().check_output(want, got, optionflags):
            return True
        return matches(want.splitlines(), got.splitlines())


def run_pycon(text: str, name: str) -> str:
    """Run a pycon block with doctest; the failures' report, empty when it passed."""
    test = doctest.DocTestParser().get_doctest(text, {}, name, name, 0)
    out: list[str] = []
    runner = doctest.DocTestRunner(checker=TolerantChecker(), optionflags=doctest.ELLIPSIS)
    runner.run(test, out=out.append)
    return "".join(out)
