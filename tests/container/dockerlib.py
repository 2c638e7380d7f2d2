"""Helpers for the container tests: the docker CLI, HTTP on loopback, containers by name."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("ALLOCSCOPE_TEST_IMAGE", "allocscope:latest")
DEMO_MALLOC_CONF = "background_thread:true,metadata_thp:auto,dirty_decay_ms:500,muzzy_decay_ms:500"
# The first container test may have to build the image (a few minutes from empty caches).
BUILD_TIMEOUT = 1500
SLOW = pytest.mark.timeout(BUILD_TIMEOUT + 300)


def docker(
    *args: str, timeout: float = 60, check: bool = False, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(port: int, path: str, timeout: float = 5) -> Response:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return Response(r.status, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.read())


@dataclass
class Container:
    name: str
    port: int | None

    def inspect(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(docker("inspect", self.name, check=True).stdout)[0]
        return state

    def logs(self) -> str:
        proc = docker("logs", self.name)
        return proc.stdout + proc.stderr

    def get(self, path: str) -> Response:
        assert self.port is not None
        return http_get(self.port, path)

    def wait_serving(self, deadline_s: float = 30) -> None:
        """Until /healthz answers; fails early when the container exits."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if not self.inspect()["State"]["Running"]:
                pytest.fail(f"{self.name} exited before serving:\n{self.logs()}")
            with contextlib.suppress(OSError):
                if self.get("/healthz").status == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"{self.name} did not serve within {deadline_s}s:\n{self.logs()}")

    def wait_health(self, status: str, deadline_s: float = 60) -> dict[str, Any]:
        end = time.monotonic() + deadline_s
        health: dict[str, Any] = {}
        while time.monotonic() < end:
            health = self.inspect()["State"].get("Health") or {}
            if health.get("Status") == status:
                return health
            time.sleep(0.5)
        pytest.fail(f"{self.name} health is not {status} after {deadline_s}s: {health}")


@contextlib.contextmanager
def service(image: str, *run_args: str, env: dict[str, str] | None = None) -> Iterator[Container]:
    """The service on 127.0.0.1:<free port> (--network host), removed afterwards."""
    name = f"allocscope-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    environment = {"HOST": "127.0.0.1", "PORT": str(port), **(env or {})}
    env_args = [a for k, v in environment.items() for a in ("-e", f"{k}={v}")]
    try:
        docker(
            "run", "-d", "--pull", "never", "--name", name, "--network", "host",
            *env_args, *run_args, image,
            check=True,
        )  # fmt: skip
        yield Container(name, port)
    finally:
        docker("rm", "-f", name, timeout=60)


def run_once(
    *args: str, timeout: float = 120, network: str = "none"
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm ARGS`` with a unique name, removed by name even after a timeout."""
    name = f"allocscope-test-{uuid.uuid4().hex[:12]}"
    try:
        return docker(
            "run", "--rm", "--pull", "never", "--name", name, "--network", network, *args,
            timeout=timeout,
        )  # fmt: skip
    finally:
        docker("rm", "-f", name, timeout=60)
