"""FastAPI under real uvicorn with 2 workers (spawned, not forked) and jemalloc preloaded."""

from __future__ import annotations

from tests.integration.appservers import each_worker, json_pid, metrics_pid, serve, uvicorn, value

BG = "background_thread:true"


def test_each_spawned_worker_has_its_own_series_and_keeps_the_thread(jemalloc: str) -> None:
    with serve(uvicorn(), LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        scrapes = each_worker(
            server, "/metrics/", metrics_pid
        )  # Starlette redirects the bare mount
        ready = each_worker(server, "/allocscope/readyz", json_pid)
        doc = server.get("/allocscope/").json()
    for pid, (status, fams) in scrapes.items():
        assert status == 200
        # Every series is this worker's, and spawn (unlike fork) keeps the thread: no hook.
        assert all(lab["pid"] == str(pid) for samples in fams.values() for lab, _ in samples)
        assert value(fams, "allocscope_jemalloc_background_thread") == 1
        assert value(fams, "allocscope_jemalloc_background_thread_restores") == 0
        [(build, _)] = fams["allocscope_build_info"]
        assert build["server"].startswith("uvicorn ")
        kinds = {lab["kind"]: v for lab, v in fams["allocscope_allocator_bytes"]}
        assert kinds["allocated"] > 0 and kinds["resident"] >= kinds["active"]
    assert all(status == 200 and d["ready"] for status, d in ready.values())
    assert doc["allocator_name"] == "jemalloc" and doc["pid"] in scrapes
