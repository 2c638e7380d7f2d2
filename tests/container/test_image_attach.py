"""``allocscope inspect --attach`` from the host into a gunicorn worker of the Flask example
image (CPython 3.14, jemalloc, FIPS): the snapshot comes from inside the container, and the
worker still serves afterwards. The target has nothing of the caller's installed: the probe
travels as source."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.container.dockerlib import SLOW, docker, service

pytestmark = [pytest.mark.container, SLOW]


def test_attach_from_the_host_into_a_containerised_worker(flask_image: str, python_xy: str) -> None:
    with service(flask_image) as c:
        c.wait_serving(deadline_s=90)
        top = docker("top", c.name, "-eo", "pid,ppid", check=True).stdout.split("\n")[1:]
        pids = {int(p): int(pp) for p, pp in (line.split() for line in top if line.strip())}
        workers = [p for p, pp in pids.items() if pp in pids]  # children of the arbiter
        assert len(workers) == 2, pids
        proc = subprocess.run(
            [sys.executable, "-m", "allocscope", "inspect", str(workers[0]), "--attach",
             "--json", "--timeout", "30"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        assert answer["attach"]["path"] == "ptrace"  # the host's 3.11 has no sys.remote_exec
        snap = answer["attach"]["snapshot"]
        assert snap["pid"] > 0  # the pid inside the container's namespace
        assert snap["allocator"]["name"] == "jemalloc"
        assert snap["jemalloc"]["stats"]["background_thread"] is True  # the post_fork hook
        assert snap["fips"]["state"] == "enforced"
        assert snap["runtime"]["python_version"].startswith(f"{python_xy}.")
        assert c.get("/healthz").status == 200  # the worker serves on, unchanged
