"""What one scrape sees under gunicorn with 2 workers: one worker, or (prometheus_client's
multiprocess mode) every worker, with allocscope publishing each worker's series."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from tests.integration.appservers import families, gunicorn, serve
from tests.integration.service_server import Server

BG = "background_thread:true"


def workers(server: Server) -> set[str]:
    return {str(p.pid) for p in psutil.Process(server.proc.pid).children()}


def wait_until_one_scrape_shows(server: Server, want: set[str]) -> set[str]:
    """Scrape until the pids seen are ``want`` (workers publish at start-up); bounded 20 s."""
    deadline = time.monotonic() + 20
    while (pids := pids_in_one_scrape(server, "/allocscope/metrics")) != want:
        assert time.monotonic() < deadline, f"one scrape shows {pids}, wanted {want}"
        time.sleep(0.1)
    return pids


def pids_in_one_scrape(server: Server, path: str) -> set[str]:
    reply = server.get(path)
    assert reply.status == 200, reply.body
    return {lab["pid"] for lab, _ in families(reply.body.decode())["allocscope_allocator_info"]}


def test_without_multiprocess_mode_a_scrape_sees_one_worker(jemalloc: str) -> None:
    command = gunicorn("sync", "-c", "python:allocscope.gunicorn_conf")
    with serve(command, LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        seen = [pids_in_one_scrape(server, "/allocscope/metrics") for _ in range(20)]
    assert all(len(pids) == 1 for pids in seen)


def test_multiprocess_mode_shows_every_worker_in_one_scrape(jemalloc: str, tmp_path: Path) -> None:
    command = gunicorn("sync", "-c", "python:allocscope.gunicorn_conf")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "ALLOCSCOPE_PUBLISH_INTERVAL": "0.2"}
    with serve(command, LD_PRELOAD=jemalloc, MALLOC_CONF=BG, **env) as server:
        first = workers(server)
        assert len(first) == 2
        wait_until_one_scrape_shows(server, first)
        fams = families(server.get("/allocscope/metrics").body.decode())
        # A worker that dies leaves the scrape (child_exit -> mark_process_dead); its
        # replacement joins it.
        dead = min(first)
        os.kill(int(dead), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while dead in (now := workers(server)) or len(now) != 2:
            assert time.monotonic() < deadline, f"gunicorn did not replace worker {dead}"
            time.sleep(0.1)
        after = wait_until_one_scrape_shows(server, now)
    assert dead not in after
    live = {lab["pid"]: v for lab, v in fams["allocscope_jemalloc_background_thread"]}
    assert live == dict.fromkeys(first, 1.0)  # each worker's own value, pid-labelled
    rss = {lab["pid"]: v for lab, v in fams["allocscope_process_resident_memory_bytes"]}
    assert set(rss) == first and all(v > 0 for v in rss.values())
    # Counters are summed over workers in this mode (prometheus_client drops their pid).
    [(labels, restores)] = fams["allocscope_jemalloc_background_thread_restores"]
    assert "pid" not in labels and restores == 2
