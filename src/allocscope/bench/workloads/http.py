"""http: a bounded soak of the real service (``allocscope serve``) under the variant.

``setup`` starts the service on a free loopback port with the child's own environment (so
the server runs on the variant's allocator), requires it to prove that allocator (the
launcher's fail-closed start-up check, then ``/readyz``), and hands the server's pid to
the worker: the parent samples the *server's* RSS, not the client's.

``run`` drives ``threads`` keep-alive clients, each sending ``iters`` requests per round:
``GET /`` and ``POST /echo`` with JSON bodies of about ``size`` bytes, one in ``keep`` of
them eight times larger (mixed sizes across the server's threads). Every request has a
timeout; all traffic stays on 127.0.0.1. Nothing is kept: after the soak the server idles
and the settle readings show what it gives back.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from allocscope.bench.workloads import Params, WorkloadError, in_threads
from allocscope.bench.workloads.json import body

DESCRIPTION = "soak of allocscope serve on loopback: GET / and POST /echo from 4 clients"
DEFAULTS = Params(threads=4, iters=300, size=8192, keep=10, rounds=2)

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for the service to answer /healthz
REQUEST_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
BODIES = 32
LARGE = 8  # one body in ``keep`` is this many times larger


class _Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
        self.proc, self.port, self.log = proc, port, log

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-1500:].strip()


_server: _Server | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def request(
    conn: http.client.HTTPConnection, method: str, path: str, data: bytes | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _get(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        status, raw = request(conn, "GET", path)
    finally:
        conn.close()
    return status, json.loads(raw) if raw else None


def _wait_healthy(server: _Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            raise RuntimeError(f"the service exited with status {code}: {server.tail()}")
        with contextlib.suppress(OSError, ValueError):
            if _get(server.port, "/healthz")[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the service did not answer /healthz within {START_TIMEOUT:g} s")


def setup(params: Params, expect: str) -> dict[str, Any]:
    """Start the service; return its pid and its own proof of its allocator."""
    global _server
    port = free_port()
    env = dict(os.environ)
    env.update(
        HOST=HOST,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        ALLOCSCOPE_THREADS=str(max(2, params.threads)),
        ALLOCSCOPE_EXPECT_ALLOCATOR=expect,  # the launcher refuses to serve otherwise
        ALLOCSCOPE_ACCESS_LOG="0",
    )
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(
        [sys.executable, "-m", "allocscope", "serve"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,  # same process group: the runner's kill reaches it too
    )
    _server = _Server(proc, port, log)
    _wait_healthy(_server)
    ready_status, ready = _get(port, "/readyz")
    _, stats = _get(port, "/stats")
    alloc = (stats or {}).get("allocator", {})
    checks = [{**c, "name": f"server {c['name']}"} for c in (ready or {}).get("checks", [])]
    if ready_status != 200 and not any(not c.get("passed") for c in checks):
        checks.append({"name": "server ready", "passed": False, "detail": str(ready)})
    return {
        "pid": proc.pid,
        "proof": {
            "allocator": alloc.get("name"),
            "version": alloc.get("version"),
            "path": alloc.get("path"),
            "worker_pid": (stats or {}).get("worker", {}).get("pid"),
            "checks": checks,
        },
    }


def run(params: Params) -> list[Any]:
    if _server is None:
        raise WorkloadError("http: setup() must start the service first")
    port = _server.port
    rng = random.Random(params.seed)
    small = [body(rng, params.size).encode() for _ in range(BODIES)]
    large = [body(rng, params.size * LARGE).encode() for _ in range(BODIES // 4)]

    def client(index: int, _keep: list[Any]) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        n = index * 5
        try:
            for _ in range(params.rounds):
                for i in range(params.iters):
                    if i % 4 == 0:
                        status, _ = request(conn, "GET", "/")
                    else:
                        pool = large if i % params.keep == 1 else small
                        status, _ = request(conn, "POST", "/echo", pool[n % len(pool)])
                    if status != 200:
                        raise RuntimeError(f"the service answered {status}")
                    n += 1
        finally:
            conn.close()

    in_threads(params, client)
    return []


def teardown() -> None:
    """Stop the service: SIGTERM, then SIGKILL after a grace period; always reap it."""
    global _server
    server, _server = _server, None
    if server is None:
        return
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    server.log.close()
