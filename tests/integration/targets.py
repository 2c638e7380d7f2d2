"""Real processes to inspect: started in their own session, always ended (by process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from tests.conftest import child_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 30, what: str = "target") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready within {timeout} s")


def serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def running(
    argv: list[str],
    ready: Callable[[subprocess.Popen[bytes]], bool] | None = None,
    cwd: str | None = None,
    **env: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` with a clean environment plus ``env``; yield once ``ready``; end it."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if ready is not None:
            wait_for(lambda: proc.poll() is None and ready(proc), what=argv[0])
        else:
            time.sleep(0.3)
        assert proc.poll() is None, proc.communicate(timeout=5)
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
