"""allocscope SIGKILLed mid-run leaves nothing running: the user's command or server, the
processes it started (a gunicorn master and its workers), and allocscope's own load
processes all end, and the run's hook directory is removed (bench/kinds/process/guard.py).

Each case starts a real run, waits until the user's first process is up, lets the run go
on for a while (the moment), SIGKILLs allocscope, and then looks for every process that
carried the run's marker and every process allocscope had started."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from allocscope.bench import orphans
from allocscope.bench.kinds.process import guard, inject
from tests.conftest import child_env
from tests.integration.test_target_serve import GUNICORN, MISBEHAVING

PY = sys.executable
SERVE = ("--duration", "30s", "--warm", "0.2s", "--settle", "0.3", "--concurrency", "4")
SLOW_COMMAND = f"{PY} -c 'import time; x = [bytearray(1000) for _ in range(50000)]; time.sleep(60)'"
CASES = {
    # name: allocscope's arguments
    "command": ["compare", "-V", "glibc", "-V", "jemalloc", "--repeats", "2", "--",
                "bash", "-c", SLOW_COMMAND],
    # a command that ignores SIGTERM: the guard's SIGKILL after its grace ends it
    "stubborn": ["compare", "-V", "glibc", "--repeats", "1", "--",
                 "bash", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"],
    "gunicorn": ["compare", "--serve", f"{GUNICORN} flask_app:app", "--ready", "/healthz",
                 "-V", "glibc", "--repeats", "1", *SERVE],
    "server ignoring SIGTERM": ["compare", "--serve", f"{MISBEHAVING} ignore-sigterm",
                                "-V", "glibc", "--repeats", "1", *SERVE],
    "tune": ["tune", "--serve", f"{GUNICORN} flask_app:app", "--ready", "/healthz",
             "--load", "100000", "--warm", "0.2s", "--settle", "0.3", "--concurrency", "4",
             "--budget", "5m", "--seed", "3"],
}  # fmt: skip
MOMENTS_S = {"command": (0.0, 1.5), "stubborn": (0.5,), "gunicorn": (0.0, 2.5),
             "server ignoring SIGTERM": (1.5,), "tune": (3.0,)}  # fmt: skip
ENDED_WITHIN_S = guard.GRACE_S + 10  # the grace, then SIGKILL, on a busy machine


def marker_of(p: psutil.Process) -> str | None:
    try:
        return p.environ().get(inject.DIR_ENV)
    except psutil.Error:
        return None


def command_line(p: psutil.Process) -> str:
    """'' for a process that has just ended (a zombie has no command line to read)."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def first_user_process(allocscope: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """Wait until a process of the run is up; its marker (the run's hook directory)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert allocscope.poll() is None, allocscope.communicate()
        for p in psutil.Process(allocscope.pid).children(recursive=True):
            marker = marker_of(p)
            if marker:
                return marker
        time.sleep(0.05)
    pytest.fail("the run's command never started")


@pytest.mark.parametrize(
    ("case", "moment"), [(c, m) for c, moments in MOMENTS_S.items() for m in moments]
)
def test_sigkill_of_allocscope_leaves_nothing_running(
    tmp_path: Path, case: str, moment: float
) -> None:
    allocscope = subprocess.Popen(
        [PY, "-m", "allocscope", *CASES[case], "-o", str(tmp_path / "out")],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        marker = first_user_process(allocscope)
        time.sleep(moment)
        started = psutil.Process(allocscope.pid).children(recursive=True)
        guards = [p for p in started if guard.__name__ in command_line(p)]
        assert len(guards) == 1, [command_line(p) for p in started]
        allocscope.send_signal(signal.SIGKILL)
        _, err = allocscope.communicate(timeout=ENDED_WITHIN_S + 30)  # the guard holds stderr
    finally:
        if allocscope.poll() is None:
            allocscope.kill()
            allocscope.wait()
    _, alive = psutil.wait_procs(started, timeout=ENDED_WITHIN_S)
    left = orphans.marked(inject.DIR_ENV, marker)
    if alive or left:  # a failure leaves nothing behind either
        orphans.stop({p.pid: "" for p in alive} | {p: "" for p in left}, 1.0)
        shutil.rmtree(marker, ignore_errors=True)
    assert alive == [], [(p.pid, p.cmdline()) for p in alive]
    assert left == set()
    assert not os.path.exists(marker)
    said = err.decode(errors="replace")
    assert "allocscope ended during a run: stopped" in said, said[-2000:]
    if case in ("stubborn", "server ignoring SIGTERM"):
        assert "by SIGKILL" in said, said[-2000:]


def test_after_a_normal_end_the_guard_ends_silently(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PY, "-m", "allocscope", "compare", "-V", "glibc", "--repeats", "1", "--warmup", "0",
         "-o", str(tmp_path / "out"), "--", PY, "-c", "x = bytearray(10**6)"],
        env=child_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "allocscope ended during a run" not in proc.stderr
