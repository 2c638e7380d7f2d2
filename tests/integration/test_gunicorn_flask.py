"""Flask under real gunicorn (2 workers, sync and gthread) with jemalloc preloaded and
``MALLOC_CONF=background_thread:true``: the thread is lost at fork without the hook, and
reported so (readiness, metrics); the hook brings it back in every worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import JEMALLOC_VERSION
from tests.integration.appservers import (
    each_worker,
    gunicorn,
    json_pid,
    metrics_pid,
    serve,
    value,
)

BG = "background_thread:true"
LOST = "background_thread: background_thread requested but not running (lost at fork)"


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_without_the_hook_every_worker_loses_the_thread(jemalloc: str, worker_class: str) -> None:
    with serve(gunicorn(worker_class), LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        states = each_worker(server, "/background-thread", json_pid)
        ready = each_worker(server, "/allocscope/readyz", json_pid)
        scrapes = each_worker(server, "/metrics", metrics_pid)
    for _, doc in states.values():
        assert doc["background_thread"] == {"requested": True, "live": False, "restores": 0}
    for status, doc in ready.values():
        assert status == 503 and doc["ready"] is False
        assert [r for r in doc["failed"] if r.startswith(LOST)], doc["failed"]
    for pid, (_, fams) in scrapes.items():
        assert value(fams, "allocscope_jemalloc_background_thread_requested", pid=str(pid)) == 1
        assert value(fams, "allocscope_jemalloc_background_thread", pid=str(pid)) == 0
        assert value(fams, "allocscope_jemalloc_background_thread_restores") == 0
        assert value(fams, "allocscope_check_passed", check="background_thread") == 0
        assert value(fams, "allocscope_check_passed", check="malloc_conf") == 0


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_the_gunicorn_conf_module_restores_it(jemalloc: str, worker_class: str) -> None:
    command = gunicorn(worker_class, "-c", "python:allocscope.gunicorn_conf")
    with serve(command, LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        states = each_worker(server, "/background-thread", json_pid)
        ready = each_worker(server, "/allocscope/readyz", json_pid)
        scrapes = each_worker(server, "/metrics", metrics_pid)
        log = server.log()
    for pid, (_, doc) in states.items():
        assert doc["background_thread"] == {"requested": True, "live": True, "restores": 1}
        assert f"allocscope: worker {pid}: background_thread was off after fork" in log
    assert all(status == 200 and doc["ready"] for status, doc in ready.values())
    for pid, (_, fams) in scrapes.items():
        assert value(fams, "allocscope_jemalloc_background_thread", pid=str(pid)) == 1
        assert value(fams, "allocscope_jemalloc_background_thread_restores") == 1
        assert value(fams, "allocscope_check_passed", check="malloc_conf") == 1
        [(info, _)] = fams["allocscope_allocator_info"]
        assert (info["name"], info["source"], info["malloc_conf"]) == ("jemalloc", "LD_PRELOAD", BG)
        [(build, _)] = fams["allocscope_build_info"]
        assert build["server"].startswith("gunicorn ")


def test_the_mounted_app_answers_under_its_prefix(jemalloc: str) -> None:
    command = gunicorn("gthread", "-c", "python:allocscope.gunicorn_conf")
    with serve(command, LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        doc = server.get("/allocscope/").json()
        metrics = server.get("/allocscope/metrics")
        missing = server.get("/allocscope/nope")
    assert doc["allocator"] == f"jemalloc {JEMALLOC_VERSION} (via LD_PRELOAD)"
    assert doc["rss_bytes"] > 0
    assert doc["server"].startswith("gunicorn ") and doc["background_thread"]["live"] is True
    assert metrics.status == 200 and b"allocscope_allocator_info{" in metrics.body
    assert missing.status == 404


def test_the_three_line_snippet_in_your_own_gunicorn_conf(jemalloc: str, tmp_path: Path) -> None:
    # The snippet as the README and allocscope.gunicorn_conf's docstring give it.
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from allocscope.forksafe import after_fork\n\n"
        "def post_fork(server, worker):\n"
        "    after_fork()\n"
    )
    with serve(gunicorn("sync", "-c", str(conf)), LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        states = each_worker(server, "/background-thread", json_pid)
    for _, doc in states.values():
        assert doc["background_thread"] == {"requested": True, "live": True, "restores": 1}
