"""allocscope agent: a real scrape of the node's processes, over loopback."""

from __future__ import annotations

import socket
import sys
import urllib.request

from allocscope.inspect.node import rss_by_pid
from tests.conftest import Families, families, run_allocscope
from tests.integration.targets import free_port, running, wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def up(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_every_process_is_scraped_with_its_allocator(jemalloc: str) -> None:
    port = free_port()
    agent = [sys.executable, "-m", "allocscope", "agent", "--port", str(port), "--top", "100000"]
    with running(SLEEPER, LD_PRELOAD=jemalloc) as target, running(agent, lambda p: up(port)):
        before = user_pids()
        metrics = _scrape(port)
        alive = before & user_pids()  # processes that lived through the whole scrape
        info = {labels["pid"]: labels for labels, _ in metrics["allocscope_process_allocator_info"]}
        assert info[str(target.pid)]["allocator"] == "jemalloc"
        assert info[str(target.pid)]["source"] == "LD_PRELOAD"
        rss = {
            lb["pid"]: v
            for lb, v in metrics["allocscope_process_memory_bytes"]
            if lb["kind"] == "rss"
        }
        assert rss[str(target.pid)] > 1_000_000
        assert {str(pid) for pid in alive} <= set(rss)  # every process is scraped


def user_pids() -> set[int]:
    """Processes with user memory (kernel threads have none), as the agent counts them."""
    return set(rss_by_pid())


def test_top_bounds_the_series() -> None:
    port = free_port()
    agent = [sys.executable, "-m", "allocscope", "agent", "--port", str(port), "--top", "3"]
    with running(agent, lambda p: up(port)):
        metrics = _scrape(port)
    pids = {lb["pid"] for lb, _ in metrics["allocscope_process_memory_bytes"]}
    assert len(pids) == 3


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_allocscope("agent", "--port", str(port))
    assert proc.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def _scrape(port: int) -> Families:
    wait_for(lambda: up(port), what="agent")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        return families(r.read().decode())
