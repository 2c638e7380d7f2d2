"""Real gunicorn and uvicorn serving the apps in tests/apps on loopback; per-worker reads."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Families, child_env, families
from tests.integration.service_server import HOST, Server, free_port, serving

REPO = Path(__file__).resolve().parents[2]


def gunicorn(worker_class: str, *extra: str, app: str = "tests.apps.flask_app:app") -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{free_port()}", "--workers", "2",
        "--worker-class", worker_class, "--threads", "2", "--graceful-timeout", "2",
        *extra, app,
    ]  # fmt: skip


def uvicorn(app: str = "tests.apps.fastapi_app:app") -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(free_port()),
        "--workers", "2", "--timeout-graceful-shutdown", "2", app,
    ]  # fmt: skip


def port_of(command: list[str]) -> str:
    if "--bind" in command:
        return command[command.index("--bind") + 1].rsplit(":", 1)[1]
    return command[command.index("--port") + 1]


def serve(command: list[str], **extra: str) -> AbstractContextManager[Server]:
    """``command`` on loopback with the repository importable; stopped when the block ends."""
    env = child_env(PYTHONPATH=str(REPO), PORT=port_of(command), **extra)
    return serving(command, env=env)


def value(fams: Families, name: str, **labels: str) -> float:
    [found] = [v for lab, v in fams[name] if labels.items() <= lab.items()]
    return found


def each_worker(
    server: Server, path: str, read: Callable[[bytes], tuple[int, Any]]
) -> dict[int, Any]:
    """GET ``path`` on new connections until both workers answered: pid -> (status, doc).

    Which worker accepts is up to the kernel; a short pause between requests lets a worker
    still importing the app finish, and lets both wait in accept. Bounded: 20 s.
    """
    seen: dict[int, Any] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reply = server.get(path)
        assert reply.status in (200, 503), (reply.status, reply.body)
        pid, doc = read(reply.body)
        seen[pid] = (reply.status, doc)
        if len(seen) == 2:
            return seen
        time.sleep(0.02)
    pytest.fail(f"only reached workers {list(seen)}")


def json_pid(body: bytes) -> tuple[int, Any]:
    import json

    doc = json.loads(body)
    return int(doc["pid"]), doc


def metrics_pid(body: bytes) -> tuple[int, Families]:
    fams = families(body.decode())
    [(labels, _)] = fams["allocscope_build_info"]
    return int(labels["pid"]), fams
