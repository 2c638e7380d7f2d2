"""Do no harm: whatever happens to allocscope during ``inspect --attach`` (SIGINT, SIGTERM,
SIGHUP, SIGKILL at many moments), the target survives untraced and unstopped, serves on
and exits with its own status. One target per main-thread shape, attached to again and
again; benchmarks/attach_sweep.py runs the long sweep."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_allocscope
from tests.integration import harm

# A bounded count: 3 signals x 2 moments per shape (+ SIGHUP once), 9 shapes.
CASES = [(s, d) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL) for d in (0, 0.004)]


@pytest.mark.parametrize("shape", list(harm.SHAPES))
def test_stopping_allocscope_mid_attach_leaves_the_target_serving(shape: str) -> None:
    outcomes = []
    with harm.target(shape) as t:
        for sig, delay in [*CASES, (signal.SIGHUP, 0.002)]:
            outcomes.append(harm.attach_and_stop(t.pid, sig, delay))
            wrong = t.harm()
            assert wrong is None, f"{shape}, {sig.name} +{delay * 1000:.0f} ms: {wrong}"
        assert t.quit() == harm.QUIT_STATUS  # its own exit, not a signal of ours
    assert "stopped" in outcomes, outcomes  # allocscope really was stopped mid-attach


SLOW_GIL = """\
import itertools, threading, time
def hog():
    sum(itertools.repeat(1, 2_000_000_000))  # ~8 s of C code holding the GIL (quiet machine)
    print("hog done", flush=True)
print("ready", flush=True)
threading.Thread(target=hog).start()
while True:
    time.sleep(0.2)
    print("main on", flush=True)
"""


def test_a_contended_gil_times_out_within_the_timeout_and_the_call_runs_later() -> None:
    """The main thread waits (sleep) but another thread holds the GIL for seconds: the
    call is left to run when the GIL comes, allocscope answers 23 in time, and the main
    thread goes on afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_GIL], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(0.3)  # the hog has the GIL
        started = time.monotonic()
        done = run_allocscope("inspect", "--attach", "--timeout", "1", str(proc.pid))
        took = time.monotonic() - started
        assert done.returncode == 23, done.stderr
        assert "within --timeout 1 s" in done.stderr or "did not answer within 1 s" in done.stderr
        assert took < 15, took  # not the GIL's seconds (48.6 s for --timeout 15 before)
        with open(f"/proc/{proc.pid}/status", encoding="utf-8") as f:
            assert "TracerPid:\t0\n" in f.read()
        lines = []
        while b"main on\n" not in lines[-1:]:  # the GIL came back: our call ran, then its sleep
            lines.append(proc.stdout.readline())
            assert lines[-1], lines
        assert b"hog done\n" in lines
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert err == b""  # the abandoned payload ran quietly: no traceback


def test_a_second_attach_names_the_first() -> None:
    with harm.target("lock_wait") as t:
        first = subprocess.Popen(
            [sys.executable, "-m", "allocscope", "inspect", "--attach", "--timeout", "20",
             str(t.pid)], stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # The first's first hold (TracerPid) claims the target, then it waits 20 s; a
            # hold lasts milliseconds, so the poll may miss it: 5 s is claim enough.
            seen, until = False, time.monotonic() + 5
            while (not seen and time.monotonic() < until) or _tracer(t.pid) != 0:
                seen = seen or _tracer(t.pid) == first.pid
                assert first.poll() is None
            second = run_allocscope("inspect", "--attach", "--timeout", "2", str(t.pid))
            assert second.returncode == 22, second.stderr
            assert f"another attach (allocscope pid {first.pid}) is running" in second.stderr
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)
        assert t.harm() is None


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return int(next(x for x in f if x.startswith("TracerPid:")).split()[1])


SEIZE = """\
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
assert libc.ptrace(0x4206, int(sys.argv[1]), None, None) == 0, ctypes.get_errno()
print("seized", flush=True)
time.sleep(60)
"""


def test_another_tracer_is_named_first() -> None:
    with harm.target("sleep") as t:
        tracer = subprocess.Popen([sys.executable, "-c", SEIZE, str(t.pid)],
                                  stdout=subprocess.PIPE)  # fmt: skip
        try:
            assert tracer.stdout is not None and tracer.stdout.readline() == b"seized\n"
            done = run_allocscope("inspect", "--attach", "--timeout", "2", str(t.pid))
        finally:
            tracer.kill()
            tracer.wait()
        assert done.returncode == 22, done.stderr
        assert f"process {t.pid} is already traced by process {tracer.pid} (python" in (done.stderr)
        assert "needs root" not in done.stderr
        assert t.harm() is None
