"""Shared by the service benchmarks: start a server on loopback, drive wrk, sample RSS."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from allocscope import libraries
from allocscope.bench.kinds.workload.runner import clean_environ
from allocscope.service.launch import APP_FACTORY, Settings

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
# Allocator variants: name -> extra environment.
_JEMALLOC = libraries.find("jemalloc") or "libjemalloc.so.2"
VARIANTS: dict[str, dict[str, str]] = {
    "glibc": {},
    "jemalloc": {"LD_PRELOAD": _JEMALLOC},
    "jemalloc-tuned": {
        "LD_PRELOAD": _JEMALLOC,
        "MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    return wrk


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    worker_pid: int

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"


@contextmanager
def server(variant: str, app: str = "service", workers: int = 1) -> Iterator[Running]:
    """The service (through ``allocscope serve``) or the constant app (granian, same flags)."""
    port = free_port()
    # The benchmark children's allow-list: no allocator or ALLOCSCOPE_* setting leaks in.
    env = clean_environ(VARIANTS[variant])
    env.update(HOST=HOST, PORT=str(port), WEB_CONCURRENCY=str(workers))
    if app == "service":
        command = [sys.executable, "-m", "allocscope", "serve"]
    else:
        args = Settings.from_environ(env).server_args()
        args[-1] = "service_constant_app:create_app"
        assert APP_FACTORY not in args
        command = [sys.executable, "-m", "granian", *args]
        env["PYTHONPATH"] = str(HERE)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            yield Running(proc, port, _wait_worker(proc, port, log))
        finally:
            family = psutil.Process(proc.pid).children(recursive=True)
            proc.terminate()
            proc.wait(15)
            for child in family:
                if child.is_running():
                    child.kill()


def _wait_worker(proc: subprocess.Popen[bytes], port: int, log: object) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2) as r:
                r.read()
            break
        except OSError:
            time.sleep(0.1)
    children = psutil.Process(proc.pid).children()
    if len(children) != 1:
        sys.exit(f"expected one worker, found {len(children)}")
    return children[0].pid


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx plus socket errors


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str, seconds: int, threads: int = 2, connections: int = 32, script: str | None = None
) -> WrkResult:
    """One bounded wrk run (loopback only)."""
    assert url.startswith(f"http://{HOST}:"), url
    command = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        errors=errors,
    )


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def describe(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(json.load(r)["allocator"])
