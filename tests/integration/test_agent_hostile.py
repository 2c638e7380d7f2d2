"""The agent stays bounded whatever its clients do (issue 16, item 3): real hostile clients
on loopback against a real agent. The figures (scrape p99, RSS over time) are
benchmarks/agent_under_load.py's job; these assert behaviour."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import child_env
from tests.integration.hostile import (
    BODY_HEAD,
    SLOW_HEAD,
    SLOW_LINE,
    Slow,
    churn,
    held,
    raise_fd_limit,
    scrape,
    scrapers,
)
from tests.integration.targets import free_port, wait_for

pytestmark = pytest.mark.timeout(240)

# The agent's own baseline: 2 processes (granian's main and its worker), a dozen threads.
MAX_THREADS = 24


# The agent as Python 3.14 runs it (the image's): multiprocessing's default start method
# there is forkserver, which granian turns into spawn, so its worker gets the app by pickle.
SPAWNED = (
    "import multiprocessing, sys; multiprocessing.set_start_method('spawn');"
    "from allocscope.cli import main; sys.exit(main(sys.argv[1:]))"
)


@contextmanager
def agent(*flags: str, spawn: bool = False) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    raise_fd_limit()
    port = free_port()
    start = ["-c", SPAWNED] if spawn else ["-m", "allocscope"]
    argv = [sys.executable, *start, "agent", "--port", str(port), *flags]
    proc = subprocess.Popen(argv, env=child_env(), stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _answers(port), what="agent")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()  # its worker follows it (PR_SET_PDEATHSIG)
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def _answers(port: int) -> bool:
    try:
        scrape(port, timeout=5)
    except OSError:
        return False
    return True


def test_1500_slow_header_connections_hold_no_threads_and_scrapes_answer() -> None:
    with agent("--header-timeout", "2") as (proc, port):
        before = held(proc.pid)
        with Slow(port, 1500, SLOW_HEAD, SLOW_LINE, every=1.0) as slow:
            time.sleep(3)
            result = scrapers(port, 10, seconds=6)
            during = held(proc.pid)
        wait_for(lambda: held(proc.pid).fds <= before.fds + 8, what="the agent's fds to drop")
    assert not result.failures and result.latencies
    assert slow.opened >= 1500 and slow.cut > 0  # the header deadline cut them
    assert during.threads <= MAX_THREADS  # the old server had one thread per connection
    assert during.pids == before.pids  # no process per connection either
    assert during.fds <= before.fds + 1500 + 8  # one socket per held connection at most


def test_connections_past_the_cap_are_not_taken() -> None:
    with agent("--max-connections", "50", "--header-timeout", "30") as (proc, port):
        before = held(proc.pid)
        with Slow(port, 400, SLOW_HEAD, SLOW_LINE, every=1.0) as slow:
            time.sleep(4)
            during = held(proc.pid)
        wait_for(lambda: held(proc.pid).fds <= before.fds + 8, what="the agent's fds to drop")
        assert _answers(port)  # serves again once the hostile clients left
    assert slow.opened >= 400
    assert during.fds <= before.fds + 50 + 8  # the other 350 wait in the kernel, not in it
    assert during.threads <= MAX_THREADS


def test_slow_bodies_hold_no_thread() -> None:
    with (
        agent("--header-timeout", "2") as (proc, port),
        Slow(port, 300, BODY_HEAD, b"x", every=0.5) as slow,
    ):
        time.sleep(2)
        result = scrapers(port, 10, seconds=4)
        during = held(proc.pid)
    assert not result.failures and result.latencies
    assert slow.opened >= 300
    assert during.threads <= MAX_THREADS


def test_many_scrapers_under_process_churn_are_all_answered() -> None:
    with agent() as (proc, port), churn():
        result = scrapers(port, 50, seconds=5)
        during = held(proc.pid)
    assert not result.failures and len(result.latencies) >= 50
    assert during.threads <= MAX_THREADS


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_under_load_ends_it_and_leaves_nothing(sig: signal.Signals) -> None:
    with agent() as (proc, port), Slow(port, 1500, SLOW_HEAD, SLOW_LINE, every=1.0):
        time.sleep(2)
        pids = held(proc.pid).pids
        assert len(pids) == 2  # granian's main process and its worker
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0  # the old server ignored SIGTERM for 13 s
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
    assert "Traceback" not in err
    for pid in pids:  # the worker did not outlive the agent
        assert "allocscope" not in _cmdline(pid)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""  # gone


def test_a_killed_agent_leaves_no_worker() -> None:
    with agent() as (proc, _port):
        pids = held(proc.pid).pids
        assert len(pids) == 2
        proc.kill()  # SIGKILL: granian's main process cannot stop its worker
        proc.wait()
        wait_for(
            lambda: all("allocscope" not in _cmdline(p) for p in pids), what="the worker to end"
        )


def test_the_agent_serves_where_its_worker_is_spawned() -> None:
    with agent(spawn=True) as (proc, port):
        scrape(port)
        assert len(held(proc.pid).pids) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
