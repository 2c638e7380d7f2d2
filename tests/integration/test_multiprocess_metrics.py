"""What one scrape sees under gunicorn with 2 workers: one worker, or (prometheus_client's
multiprocess mode) every worker, with allocscope publishing each worker's series."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.appservers import families, gunicorn, serve
from tests.integration.service_server import Server

BG = "background_thread:true"


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
        deadline = time.monotonic() + 20  # both workers must have imported the app
        while len(pids := pids_in_one_scrape(server, "/allocscope/metrics")) < 2:
            assert time.monotonic() < deadline, f"one scrape shows only {pids}"
            time.sleep(0.1)
        reply = server.get("/allocscope/metrics")
        fams = families(reply.body.decode())
        workers = {p.pid for p in _children(server)}
    assert pids == {str(p) for p in workers}
    live = {lab["pid"]: v for lab, v in fams["allocscope_jemalloc_background_thread"]}
    assert live == {str(p): 1.0 for p in workers}  # each worker's own value, pid-labelled
    rss = {lab["pid"]: v for lab, v in fams["allocscope_process_resident_memory_bytes"]}
    assert set(rss) == set(live) and all(v > 0 for v in rss.values())
    # Counters are summed over workers in this mode (prometheus_client drops their pid).
    [(labels, restores)] = fams["allocscope_jemalloc_background_thread_restores"]
    assert "pid" not in labels and restores == 2


def _children(server: Server) -> list[object]:
    import psutil

    return list(psutil.Process(server.proc.pid).children())
