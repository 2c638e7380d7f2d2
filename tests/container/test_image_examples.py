"""The image as a template for any app: examples/flask-gunicorn and examples/fastapi-uvicorn,
built with the build arguments (container/build-image.sh --app), run on loopback.

Each: healthy, ``verify`` passes inside, jemalloc serves malloc in every worker with its
background thread (asked of each worker over HTTP, and counted from the host in
/proc/<pid>/task/*/comm), FIPS enforced and MD5 refused, and the launcher refuses to start
an app whose module does not import.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psutil
import pytest

from tests.conftest import bg_threads
from tests.container.dockerlib import SLOW, docker, run_once, service

pytestmark = [pytest.mark.container, SLOW]

HEALTH = ("--health-interval", "1s", "--health-timeout", "10s", "--health-start-period", "60s")
HARDENED = (
    "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
)  # fmt: skip


MD5 = "import hashlib\ntry:\n    hashlib.md5(b'x')\nexcept ValueError as e:\n    print('no', e)"


def each_worker(get: Any, want: int = 2, deadline_s: float = 30) -> dict[int, dict[str, Any]]:
    """GET /allocscope/ on new connections until ``want`` worker pids answered."""
    seen: dict[int, dict[str, Any]] = {}
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and len(seen) < want:
        reply = get("/allocscope/")
        assert reply.status == 200, reply.body
        doc = reply.json()
        seen[doc["pid"]] = doc
        time.sleep(0.02)
    assert len(seen) == want, f"only workers {sorted(seen)} answered"
    return seen


def host_pids(name: str) -> list[int]:
    """The container's own processes, as host pids: its first process and every descendant.
    Not ``docker top``: that also lists the health check docker starts beside them every
    second (--health-interval 1s), caught at any moment of its start."""
    root = int(docker("inspect", "-f", "{{.State.Pid}}", name, check=True).stdout)
    return [root, *(c.pid for c in psutil.Process(root).children(recursive=True))]


def test_example_runs_healthy_with_jemalloc_in_every_worker(
    example_image: tuple[str, str],
) -> None:
    example, image = example_image
    with service(image, *HARDENED, *HEALTH) as c:
        c.wait_serving(deadline_s=90)
        assert c.get("/").json()["app"] == example
        workers = each_worker(c.get)
        for pid, doc in workers.items():
            assert doc["allocator_name"] == "jemalloc", (pid, doc)
            assert "LD_PRELOAD" in doc["allocator"]
            assert doc["background_thread"]["requested"] and doc["background_thread"]["live"]
            assert doc["fips"]["state"] == "enforced", doc["fips"]
        # From the host: every process of the container (server, workers, uvicorn's
        # resource tracker) runs jemalloc's background thread (more than one once several
        # arenas are in use).
        pids = host_pids(c.name)
        assert len(pids) >= 3, pids
        threads = {pid: bg_threads(pid) for pid in pids}
        assert all(n >= 1 for n in threads.values()), threads

        launch = next(
            json.loads(line)
            for line in c.logs().splitlines()
            if line.startswith("{") and '"event":"launch"' in line
        )
        assert launch["app"] == "app:app" and launch["app_check"] == "imports"
        assert all(launch["checks"].values()) and launch["checks"]["fips"] is True
        assert launch["bind_check"] == [f"127.0.0.1:{c.port}"]

        verify = docker("exec", c.name, "/usr/bin/python", "-m", "allocscope", "verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        md5 = docker("exec", c.name, "/usr/bin/python", "-c", MD5)
        assert md5.returncode == 0 and md5.stdout.startswith("no "), md5
        assert c.get("/sha256/abc").json()["sha256"].startswith("ba7816bf")
        health = c.wait_health("healthy", deadline_s=90)
        assert health["Log"][-1]["ExitCode"] == 0


def test_example_app_that_does_not_import_fails_closed(example_image: tuple[str, str]) -> None:
    """The same image and server told to serve a module that is not there: exit 116."""
    _, image = example_image
    labels = json.loads(docker("image", "inspect", image, check=True).stdout)[0]["Config"]
    command = labels["Labels"]["allocscope.app.command"]
    assert command.endswith(" app:app"), command
    wrong = command.removesuffix("app:app") + "missing_module:app"
    proc = run_once("-e", f"ALLOCSCOPE_COMMAND={wrong}", "-e", "HOST=127.0.0.1", image)
    assert proc.returncode == 116, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert line["error"] == "app_import_failed"
    assert "ModuleNotFoundError: No module named 'missing_module'" in line["message"]


def test_example_command_not_in_the_image_fails_closed(example_image: tuple[str, str]) -> None:
    _, image = example_image
    proc = run_once(image, "hypercorn", "app:app")
    assert proc.returncode == 115, proc.stderr
    [line] = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert line["error"] == "command_not_found" and line["name"] == "hypercorn"
