"""Flask under real gunicorn (2 workers, sync and gthread) with jemalloc preloaded."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import child_env
from tests.integration.service_server import HOST, Server, free_port, serving

REPO = Path(__file__).resolve().parents[2]
BG = "background_thread:true"


def gunicorn(worker_class: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{free_port()}", "--workers", "2",
        "--worker-class", worker_class, "--threads", "2", "--graceful-timeout", "5",
        *extra, "tests.apps.flask_app:app",
    ]  # fmt: skip


def port_of(command: list[str]) -> str:
    return command[command.index("--bind") + 1].rsplit(":", 1)[1]


def per_worker(server: Server, path: str, key: Callable[[Any], int]) -> dict[int, Any]:
    """GET ``path`` on new connections until both workers answered (bounded)."""
    seen: dict[int, Any] = {}
    for _ in range(400):
        reply = server.get(path)
        assert reply.status == 200, reply.body
        doc = reply.json()
        seen[key(doc)] = doc
        if len(seen) == 2:
            return seen
    pytest.fail(f"only reached workers {list(seen)}")


def serve_flask(command: list[str], jemalloc: str, **extra: str) -> Any:
    env = child_env(
        LD_PRELOAD=jemalloc, MALLOC_CONF=BG, PYTHONPATH=str(REPO), PORT=port_of(command), **extra
    )
    return serving(command, env=env)


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_without_the_hook_every_worker_loses_the_thread(jemalloc: str, worker_class: str) -> None:
    with serve_flask(gunicorn(worker_class), jemalloc) as server:
        seen = per_worker(server, "/background-thread", lambda d: d["pid"])
    for doc in seen.values():
        assert doc["background_thread"] == {"requested": True, "live": False, "restores": 0}


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_the_gunicorn_conf_module_restores_it(jemalloc: str, worker_class: str) -> None:
    command = gunicorn(worker_class, "-c", "python:allocscope.gunicorn_conf")
    with serve_flask(command, jemalloc) as server:
        seen = per_worker(server, "/background-thread", lambda d: d["pid"])
        log = server.log()
    for pid, doc in seen.items():
        assert doc["background_thread"] == {"requested": True, "live": True, "restores": 1}
        assert f"allocscope: worker {pid}: background_thread was off after fork" in log
