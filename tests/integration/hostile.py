"""Hostile HTTP clients on loopback (slow headers, slow bodies, many scrapers, process
churn) and what a server's process tree holds meanwhile. Used by the agent's tests and by
benchmarks/agent_under_load.py."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

HOST = "127.0.0.1"
SLOW_HEAD = b"GET /metrics HTTP/1.1\r\nHost: agent\r\n"  # then one header line at a time
SLOW_LINE = b"X-Slow: 1\r\n"
BODY_HEAD = b"POST /metrics HTTP/1.1\r\nHost: agent\r\nContent-Length: 1000000\r\n\r\n"
PENDING = (errno.EAGAIN, errno.ENOTCONN, errno.EINPROGRESS)


def raise_fd_limit(wanted: int = 8192) -> None:
    """Room for thousands of client sockets (CI's default soft limit is 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        cap = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (cap, hard))


class Slow:
    """``count`` connections that each send ``head``, then ``drip`` every ``every`` seconds.

    A connection the server closes is opened again at once (counted in ``cut``), so the
    load lasts as long as the context. Connecting never blocks: a connection the server
    does not accept yet just waits in its backlog."""

    def __init__(self, port: int, count: int, head: bytes, drip: bytes, every: float) -> None:
        self.port, self.count, self.head, self.drip, self.every = port, count, head, drip, every
        self.opened = self.cut = 0
        self._socks: dict[socket.socket, bool] = {}  # -> head sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slow:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for s in self._socks:
            s.close()

    def _open(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, self.port))
        self._socks[s] = False
        self.opened += 1

    def _tend(self, s: socket.socket) -> bool:
        """Send the next bytes; False once the server closed the connection."""
        try:
            while s.recv(65536):  # an answer (to a body sent slowly): read and drop it
                pass
            return False  # b"": closed by the server
        except OSError as e:
            if e.errno not in PENDING:
                return False
        try:
            s.send(self.drip if self._socks[s] else self.head)
            self._socks[s] = True
        except OSError as e:
            return e.errno in PENDING
        return True

    def _run(self) -> None:
        for _ in range(self.count):
            self._open()
        while not self._stop.is_set():
            for s in list(self._socks):
                if not self._tend(s):
                    del self._socks[s]
                    s.close()
                    self.cut += 1
                    self._open()
            self._stop.wait(self.every)


@dataclass
class Scrapes:
    """Answers (seconds each) and failures of GET /metrics by ``scrapers`` threads."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def scrape(port: int, timeout: float = 30) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=timeout) as r:
        body = r.read()
        if r.status != 200 or b"allocscope_process_memory_bytes" not in body:
            raise OSError(f"status {r.status}, {len(body)} bytes")
    return time.perf_counter() - start


def scrapers(port: int, count: int, seconds: float, timeout: float = 30) -> Scrapes:
    """``count`` threads scraping back to back for ``seconds`` (at least one scrape each)."""
    out = Scrapes()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        while True:
            try:
                out.latencies.append(scrape(port, timeout))
            except OSError as e:
                out.failures.append(str(e))
            if time.monotonic() >= deadline:
                return

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 2 * timeout)
    return out


@contextlib.contextmanager
def churn(every: float = 0.01) -> Iterator[None]:
    """Short-lived processes started and ended back to back: pids vanish mid-scrape."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            subprocess.run(["sleep", "0.05"], check=False)
            stop.wait(every)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(10)


@dataclass(frozen=True)
class Held:
    """What a process tree holds: processes, threads, open fds, proportional resident bytes
    (PSS: pages a forked worker shares with its parent count once, as the cgroup does)."""

    pids: tuple[int, ...]
    threads: int
    fds: int
    pss: int


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc's children lists."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    return out


def held(pid: int) -> Held:
    pids, threads, fds, pss = tree(pid), 0, 0, 0
    for p in pids:
        with contextlib.suppress(OSError):
            threads += len(os.listdir(f"/proc/{p}/task"))
            fds += len(os.listdir(f"/proc/{p}/fd"))
            with open(f"/proc/{p}/smaps_rollup") as f:
                pss += next(int(ln.split()[1]) for ln in f if ln.startswith("Pss:")) * 1024
    return Held(tuple(pids), threads, fds, pss)
