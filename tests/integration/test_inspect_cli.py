"""allocscope inspect on the command line: bad input, --watch, --all, another user's view."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import as_nobody, run_allocscope
from tests.integration.targets import running

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["999999999"], 3, "no such process: 999999999"),
        (["0"], 3, "not a process id: 0"),
        (["-5"], 3, "not a process id: -5"),
        (["2"], 20, "process 2 is a kernel thread (kthreadd): no user memory"),
        (["abc"], 3, "not a process id: 'abc'"),  # as the epilog says
        ([], 2, "give at least one PID, or --all"),
        (["--all", "1"], 2, "give PIDs or --all, not both"),
        (["1", "--count", "2"], 2, "--count needs --watch"),
        (["1", "--trim"], 2, "--trim needs --attach"),
        (["--all", "--attach"], 2, "--attach takes PIDs (not --all or --watch)"),
        # a value a flag cannot take: bad input (exit 3), as the README's exit codes say
        (["1", "--attach", "--timeout", "0"], 3, "--timeout '0': must be a number of seconds"),
        (["1", "--watch", "inf"], 3, "--watch 'inf': must be a number of seconds above 0 and"),
        (["1", "--watch", "1e308"], 3, "--watch '1e308': must be a number of seconds above 0"),
        (["1", "--watch", "nan"], 3, "--watch 'nan': must be a number of seconds"),
        (["1", "--watch", "soon"], 3, "--watch 'soon': must be a number of seconds"),
        (["1", "--watch", "1", "--count", "x"], 3, "--count 'x': must be a whole number"),
    ],
)
def test_bad_input(args: list[str], code: int, message: str) -> None:
    proc = run_allocscope("inspect", *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "_seconds" not in proc.stderr and "_count" not in proc.stderr  # no internal names


def test_zombie() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    break
            time.sleep(0.05)
        proc = run_allocscope("inspect", str(child.pid))
        assert proc.returncode == 20
        assert f"process {child.pid} is a zombie" in proc.stderr
    finally:
        child.wait()


def test_watch_prints_a_timeline_and_stops() -> None:
    with running(SLEEPER) as target:
        proc = run_allocscope("inspect", str(target.pid), "--watch", "0.2", "--count", "3")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 3 and all(f"pid {target.pid} python" in x for x in lines)
        assert all("glibc 2." in x and "rss " in x for x in lines)
        proc = run_allocscope(
            "inspect", "--json", str(target.pid), "--watch", "0.1", "--count", "2"
        )
        docs = [json.loads(x) for x in proc.stdout.splitlines()]
        assert [d["pid"] for d in docs] == [target.pid] * 2


def test_watch_follows_until_the_process_exits() -> None:
    with running([sys.executable, "-c", "import time; time.sleep(3)"]) as target:
        proc = run_allocscope("inspect", str(target.pid), "--watch", "0.3", timeout=30)
    assert proc.returncode == 0, proc.stderr  # the normal end of a timeline
    assert len(proc.stdout.splitlines()) >= 2
    assert f"process {target.pid} has ended" in proc.stderr
    assert "no such process" not in proc.stderr and "Traceback" not in proc.stderr


def test_watch_of_a_pid_that_never_existed_is_still_an_error() -> None:
    proc = run_allocscope("inspect", "999999999", "--watch", "0.1", "--count", "2")
    assert proc.returncode == 3 and "no such process: 999999999" in proc.stderr


def test_all_sees_every_process_and_skips_kernel_threads() -> None:
    with running(SLEEPER) as target:
        proc = run_allocscope("inspect", "--all", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    pids = {p["pid"] for p in doc["processes"]}
    assert target.pid in pids and os.getpid() in pids and 2 not in pids
    assert doc["errors"] == []


def test_another_users_process_is_answered_in_part() -> None:
    """As nobody, a root process's maps and environ are unreadable: unknown, with the reason."""
    with running(SLEEPER) as target:
        proc = as_nobody("inspect", "--json", str(target.pid))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["processes"][0]
    unknown = {u["part"]: u["reason"] for u in report["unknowns"]}
    assert unknown["environ"].startswith("permission denied")
    assert unknown["maps"].startswith("permission denied")
    assert report["allocator"] is None
    assert report["memory"]["process"]["rss_bytes"] > 0  # status is world-readable
