"""Start the real service (granian) on loopback for a test, speak HTTP to it, always stop it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import child_env

HOST = "127.0.0.1"
LAUNCHER = Path(__file__).resolve().parents[2] / "src" / "allocscope" / "service" / "launch.py"
SERVE = (sys.executable, "-m", "allocscope", "serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    saved_log: str | None = None  # kept when the server stops and its log file goes

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> Reply:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def log(self) -> str:
        if self.saved_log is not None:
            return self.saved_log
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [ln for ln in self.log().splitlines() if ln.startswith("{")]
        return [e for e in map(json.loads, lines) if e.get("event") == name]

    def raw(self, data: bytes, wait: float = 5) -> bytes:
        """Send bytes as they are; return all that comes back until the server closes or
        ``wait`` passes. The reply ends with b'<closed>' when the server closed."""
        with socket.create_connection((HOST, self.port), timeout=wait) as s:
            try:
                s.sendall(data)
            except OSError:  # the server may stop reading (and reset) mid-request
                return b"<closed>"
            out = b""
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                except ConnectionError:
                    return out + b"<closed>"
                if not chunk:
                    return out + b"<closed>"
                out += chunk
            return out


def status_of(reply: bytes) -> int | None:
    if not reply.startswith(b"HTTP/1."):
        return None
    return int(reply.split(b" ", 2)[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM the server by pid, wait; then kill by pid whatever of its workers is left."""
    try:
        family = [proc, *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for child in family[1:]:
        try:
            child.kill()
            child.wait(5)
        except psutil.NoSuchProcess:
            pass


def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if server.get("/healthz").status == 200:
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"server not ready within {timeout} s:\n{server.log()}")


@contextmanager
def serving(
    command: Sequence[str] = SERVE, env: dict[str, str] | None = None, **extra: str
) -> Iterator[Server]:
    """Run ``command`` (the service) on a free loopback port until the block ends."""
    port = free_port()
    environ = child_env(HOST=HOST, PORT=str(port), **extra) if env is None else env
    environ.setdefault("PORT", str(port))
    with tempfile.NamedTemporaryFile(prefix="allocscope-serve-", suffix=".log") as log:
        proc = subprocess.Popen(
            list(command), env=environ, stdout=log, stderr=subprocess.STDOUT, cwd="/"
        )
        server = Server(proc, int(environ["PORT"]), Path(log.name))
        try:
            wait_ready(server)
            yield server
        finally:
            stop(proc)
            server.saved_log = server.log()
