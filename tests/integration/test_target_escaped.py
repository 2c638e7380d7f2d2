"""Every process a command spawned is accounted for (issue 16, item 5): a daemon that left
the process group and session is found, stopped and reported, for `compare -- CMD` and
`compare --serve`; and what else a command or a server can do wrong."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from allocscope import exitcodes
from allocscope.bench import orphans
from allocscope.bench.evidence import Escaped
from tests.integration.test_target_command import compare, evidence, gone

PY = sys.executable
MISBEHAVING = Path(__file__).resolve().parent / "apps" / "misbehaving.py"


def escape(name: str) -> str:
    """Shell: a daemon named ``name`` in its own session, disowned (issue 16's case)."""
    return f"setsid bash -c 'exec -a {name} sleep 777 & disown'"


def running(name: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if orphans.command(int(pid)).startswith(name) and orphans._live(int(pid)):
            found.append(int(pid))
    return found


def check_reported(name: str, text: str, escaped: tuple[Escaped, ...]) -> None:
    assert len(escaped) == 1 and escaped[0].command.startswith(name), escaped
    pid = escaped[0].pid
    assert f"process {pid} ({name} 777) left the command's process group" in text, text
    assert not running(name)  # stopped, not only told


def test_a_command_that_leaves_a_daemon(tmp_path: Path) -> None:
    name = f"allocscope-escapee-{secrets.token_hex(4)}"
    code, text, results = compare(
        tmp_path,
        "-V",
        "glibc",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--",
        "bash",
        "-c",
        f"{escape(name)}; sleep 1",  # long enough to be read from outside on a busy machine
    )
    try:
        assert code == exitcodes.OK, text
        assert results is not None and not gone(results)
        run = results.runs[0]
        assert run.ok, run.failures
        check_reported(name, text, evidence(run).escaped)
        assert name in (tmp_path / "out" / "report.md").read_text()
    finally:
        for pid in running(name):
            os.kill(pid, 9)


def test_a_server_that_leaves_a_daemon(tmp_path: Path) -> None:
    name = f"allocscope-escapee-{secrets.token_hex(4)}"
    server = f'bash -c "{escape(name)}; exec {PY} {MISBEHAVING} {{port}} fine"'
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", server, "--duration", "1s", "--settle", "0.2"
    )
    try:
        assert code == exitcodes.OK, text
        assert results is not None and not gone(results)
        run = results.runs[0]
        assert run.ok, run.failures
        check_reported(name, text, evidence(run).escaped)
    finally:
        for pid in running(name):
            os.kill(pid, 9)


def test_a_daemon_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    name = f"allocscope-stubborn-{secrets.token_hex(4)}"
    stubborn = f"setsid bash -c \"trap '' TERM; exec -a {name} sleep 777\" & disown"
    code, text, results = compare(
        tmp_path,
        "-V",
        "glibc",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--",
        "bash",
        "-c",
        f"{stubborn}; sleep 1",
    )
    try:
        assert code == exitcodes.OK, text
        assert results is not None
        (escaped,) = evidence(results.runs[0]).escaped
        assert escaped.how == "SIGKILL" and not running(name)
    finally:
        for pid in running(name):
            os.kill(pid, 9)
