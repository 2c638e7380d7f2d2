"""The built-in HTTP/1.1 load generator: fixed concurrency, for a duration or a count.

Why this shape: it must not be the bottleneck on a small machine. Every request is
encoded once, up front; each connection is a bare :class:`asyncio.Protocol` (no client
library, no per-request objects): it writes the pre-encoded bytes, finds the end of the
headers, reads ``Content-Length`` (or walks chunks) and writes the next request on the
same keep-alive connection. uvloop runs the loop when it is installed (it is in the
``load`` extra). Several processes (``procs``) share the connections when one core is
not enough. Latencies go into a log-bucketed histogram (1 % resolution, bounded memory
for an 8 h soak). ``benchmarks/load_vs_wrk.py`` measures this against wrk.

Only loopback: the host is 127.0.0.1 or ::1, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from allocscope import procctl, userfile
from allocscope.bench.evidence import LoadSummary
from allocscope.errors import AllocscopeError

LOOPBACK = ("127.0.0.1", "::1")
BUCKETS_PER_E = 100  # log buckets: e^(1/100): ~1 % apart
REQUEST_TIMEOUT = 10.0
RECONNECT_PAUSE = 0.05


class LoadError(AllocscopeError):
    """A requests file or URL that cannot be used (bad input, exit 3)."""


@dataclass(frozen=True)
class Request:
    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        names = {k.lower() for k, _ in self.headers}
        lines += [f"{k}: {v}" for k, v in self.headers]
        wants_length = self.body or self.method in ("POST", "PUT", "PATCH")
        if wants_length and "content-length" not in names:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _request(doc: Any, where: str) -> Request:
    if not isinstance(doc, dict):
        raise LoadError(f"{where}: expected a JSON object with method, path, headers, body")
    unknown = set(doc) - {"method", "path", "headers", "body"}
    if unknown:
        raise LoadError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    method = doc.get("method", "GET")
    if not isinstance(method, str) or not method or not set(method) <= _TOKEN:
        raise LoadError(f"{where}: method {method!r} is not an HTTP method")
    path = doc.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in " \r\n"):
        raise LoadError(f"{where}: path {path!r} must start with / and hold no spaces")
    headers = doc.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and set(k) <= _TOKEN and "\n" not in v
        for k, v in headers.items()
    ):
        raise LoadError(f"{where}: headers must be an object of header names to strings")
    body = doc.get("body", "")
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if body is not None and not isinstance(body, str):
        headers = {"Content-Type": "application/json", **headers}
    return Request(method.upper(), path, tuple(headers.items()), data)


def read_requests(path: str) -> list[Request]:
    """One request per line, JSON: ``{"method", "path", "headers", "body"}``."""
    try:
        text = userfile.read_text(path, userfile.REQUESTS_LIMIT, f"--requests {path}")
    except userfile.UserFileError as e:
        raise LoadError(str(e)) from None
    lines = text.splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise LoadError(f"--requests {path} line {number}: not JSON: {e.msg}") from None
        out.append(_request(doc, f"--requests {path} line {number}"))
    if not out:
        raise LoadError(f"--requests {path}: no requests in the file")
    return out


def single(url_path: str) -> list[Request]:
    return [_request({"path": url_path}, f"--url {url_path}")]


# --- latencies -----------------------------------------------------------------------


@dataclass
class Histogram:
    """Counts per log bucket of seconds; percentiles within ~1 %."""

    counts: dict[int, int] = field(default_factory=dict)
    n: int = 0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        b = int(math.log(max(seconds, 1e-7)) * BUCKETS_PER_E)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1
        if seconds > self.max_s:
            self.max_s = seconds

    def merge(self, other: Histogram) -> None:
        for b, c in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + c
        self.n += other.n
        self.max_s = max(self.max_s, other.max_s)

    def percentile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank, seen = q / 100 * self.n, 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(math.exp((b + 0.5) / BUCKETS_PER_E), self.max_s)
        return self.max_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {str(k): v for k, v in self.counts.items()},
            "n": self.n,
            "max_s": self.max_s,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Histogram:
        counts = {int(k): int(v) for k, v in doc.get("counts", {}).items()}
        return cls(counts, int(doc.get("n", 0)), float(doc.get("max_s", 0.0)))


@dataclass
class LoadResult:
    ok: int = 0  # 2xx and 3xx answers
    errors: dict[str, int] = field(default_factory=dict)  # "status 503", "reset", "timeout"
    duration_s: float = 0.0
    latency: Histogram = field(default_factory=Histogram)

    @property
    def answered(self) -> int:
        return self.latency.n

    def rps(self) -> float:
        return self.answered / self.duration_s if self.duration_s > 0 else 0.0

    def merge(self, other: LoadResult) -> None:
        self.ok += other.ok
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.duration_s = max(self.duration_s, other.duration_s)
        self.latency.merge(other.latency)

    def summary(self) -> LoadSummary:
        def ms(q: int) -> float:
            return round((self.latency.percentile(q) or 0.0) * 1000, 3)

        return LoadSummary(
            requests=self.answered,
            ok=self.ok,
            errors=dict(sorted(self.errors.items())),
            error_count=sum(self.errors.values()),
            duration_s=round(self.duration_s, 3),
            rps=round(self.rps(), 1),
            p50_ms=ms(50),
            p90_ms=ms(90),
            p99_ms=ms(99),
            max_ms=round(self.latency.max_s * 1000, 3),
        )


# --- one process's clients -----------------------------------------------------------


class _Shared:
    """What one load process's connections share: the payloads, the budget, the tally."""

    def __init__(self, payloads: Sequence[bytes], count: int | None, counter: Any) -> None:
        self.payloads = payloads
        self.next = 0
        self.left = count  # None: until the deadline
        self.over = False  # set by a timer at the deadline: no clock read per request
        self.counter = counter
        self.result = LoadResult()
        self.latencies: list[float] = []  # folded into the histogram every tick
        self.answered = 0
        self.started = time.perf_counter()
        self.last = self.started
        self.clients: set[_Client] = set()
        self.done = asyncio.get_running_loop().create_future()
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task kept referenced until it ends (the loop holds only weak references)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def more(self) -> bool:
        if self.over or self.stopping:
            return False
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def exhausted(self) -> bool:
        """No more requests to send (without taking one from the budget)."""
        return self.over or self.stopping or (self.left is not None and self.left <= 0)

    def payload(self) -> bytes:
        p = self.payloads[self.next]
        self.next = (self.next + 1) % len(self.payloads)
        return p

    def error(self, kind: str) -> None:
        self.result.errors[kind] = self.result.errors.get(kind, 0) + 1
        self.answered += 1

    def fold(self) -> None:
        """Latencies into the histogram; the shared counter for the parent's sampling."""
        add = self.result.latency.add
        for lat in self.latencies:
            add(lat)
        self.latencies.clear()
        self.counter.value = self.answered

    def finished(self, client: _Client) -> None:
        self.clients.discard(client)
        if not self.clients and not self.done.done():
            self.done.set_result(None)


def _content_length(head: bytes) -> int | None:
    """From a response head already lower-cased (only the head: bodies are never copied)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return None
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : stop if stop >= 0 else len(head)])


class _Client(asyncio.Protocol):
    def __init__(self, shared: _Shared, host: str, port: int) -> None:
        self.s = shared
        self.host, self.port = host, port
        self.buf = b""
        self.t0 = 0.0
        self.busy = False
        self.transport: asyncio.Transport | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.create_connection(lambda: self, self.host, self.port)
                return
            except ConnectionRefusedError:
                self.s.error("connection refused")
            except OSError as e:
                self.s.error(f"connect: {e.strerror or type(e).__name__}")
            if self.s.exhausted():
                self.s.finished(self)
                return
            await asyncio.sleep(RECONNECT_PAUSE)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.send(time.perf_counter())

    def send(self, now: float) -> None:
        if not self.s.more():
            self.busy = False
            if self.transport is not None:
                self.transport.close()
            self.s.finished(self)
            return
        self.busy = True
        self.t0 = now
        assert self.transport is not None
        self.transport.write(self.s.payload())

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        pos, n = 0, len(data)
        while pos < n:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            if data[pos : pos + 5] != b"HTTP/":
                self._broken("malformed response")
                return
            head = data[pos:end].lower()
            length = _content_length(head)
            if length is not None:
                stop = end + 4 + length
            elif b"\r\ntransfer-encoding: chunked" in head:
                last = data.find(b"\r\n0\r\n\r\n", end + 2)
                if last < 0:
                    break
                stop = last + 7
            else:
                stop = end + 4
            if stop > n:
                break
            status = data[pos + 9 : pos + 12]
            close = b"\r\nconnection: close" in head
            pos = stop
            now = time.perf_counter()
            s = self.s
            s.latencies.append(now - self.t0)
            s.last = now
            s.answered += 1
            if status < b"400":
                s.result.ok += 1
            else:
                kind = f"status {status.decode(errors='replace')}"
                s.result.errors[kind] = s.result.errors.get(kind, 0) + 1
            if close:
                self.busy = False
                assert self.transport is not None
                self.transport.close()
                self.buf = b""
                return
            self.send(now)
            if not self.busy:
                return
        self.buf = data[pos:] if pos < n else b""

    def _broken(self, kind: str) -> None:
        self.s.error(kind)
        self.busy = False
        self.buf = b""
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            self.busy = False
            self.s.error("reset" if exc is not None else "closed by server")
        if self in self.s.clients and not self.s.exhausted():
            self.s.spawn(self.connect())
        else:
            self.s.finished(self)

    def overdue(self, now: float, timeout: float) -> bool:
        return self.busy and now - self.t0 > timeout


async def _drive(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    connections: int,
    count: int | None,
    duration: float | None,
    counter: Any,
    timeout: float,
    halt: Any = None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + duration if duration else None
    shared = _Shared(payloads, count, counter)
    if duration:
        loop.call_later(duration, lambda: setattr(shared, "over", True))
    clients = [_Client(shared, host, port) for _ in range(connections)]
    shared.clients = set(clients)
    for c in clients:
        shared.spawn(c.connect())
    while not shared.done.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(shared.done), 0.25)
        shared.fold()
        now = time.perf_counter()
        for c in list(shared.clients):
            if c.overdue(now, timeout):
                c._broken("timeout")
        late = deadline is not None and time.monotonic() > deadline + timeout
        if late or (halt is not None and halt.is_set()):
            shared.stopping = True
            for c in list(shared.clients):
                if c.transport is not None:
                    c.transport.abort()
                shared.finished(c)
    shared.fold()
    shared.result.duration_s = shared.last - shared.started
    return shared.result


def _process_main(
    host: str,
    port: int,
    payloads: list[bytes],
    connections: int,
    count: int | None,
    duration: float | None,
    counter: Any,
    go: Any,
    out: Connection,
    timeout: float,
    ready: Any,
    halt: Any,
    parent: int,
) -> None:
    # Ended with allocscope however it ends (a SIGKILLed parent runs no clean-up).
    procctl.die_with_parent(parent)
    # The parent decides when the load ends (halt, stop): Ctrl-C reaches the whole
    # foreground group, and the parent's own handlers must not run here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        import uvloop  # optional: about twice the requests per CPU second

        uvloop.install()
    except ImportError:
        pass
    ready.set()
    go.wait()
    result = asyncio.run(
        _drive(host, port, payloads, connections, count, duration, counter, timeout, halt)
    )
    out.send(
        {
            "ok": result.ok,
            "errors": result.errors,
            "duration_s": result.duration_s,
            "latency": result.latency.to_dict(),
        }
    )
    out.close()


# --- the parent's handle -------------------------------------------------------------


class Load:
    """Load processes against ``host:port``; read :meth:`completed` while they run."""

    def __init__(
        self,
        host: str,
        port: int,
        requests: Sequence[Request],
        *,
        concurrency: int,
        procs: int = 1,
        count: int | None = None,
        duration: float | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if host not in LOOPBACK:
            raise LoadError(f"load only on loopback, not {host}")
        procs = max(1, min(procs, concurrency))
        # fork, not spawn: no interpreter start-up per process, and no resource-tracker
        # process left behind (spawn's semaphores need one for as long as we live).
        ctx = multiprocessing.get_context("fork")
        payloads = [
            r.encode(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}") for r in requests
        ]
        self._go = ctx.Event()
        self._counters = [ctx.Value("q", 0, lock=False) for _ in range(procs)]
        self._ready = [ctx.Event() for _ in range(procs)]
        self._halt = ctx.Event()  # end the load early, keeping its figures
        self._pipes: list[Connection] = []
        self._procs = []
        for i in range(procs):
            conns = concurrency // procs + (1 if i < concurrency % procs else 0)
            share = None if count is None else count // procs + (1 if i < count % procs else 0)
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_process_main,
                args=(
                    host,
                    port,
                    payloads,
                    conns,
                    share,
                    duration,
                    self._counters[i],
                    self._go,
                    send,
                    timeout,
                    self._ready[i],
                    self._halt,
                    os.getpid(),
                ),
                daemon=True,
            )
            p.start()
            send.close()
            self._pipes.append(recv)
            self._procs.append(p)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Every load process is up (interpreter started, loop chosen)."""
        end = time.monotonic() + timeout
        return all(e.wait(max(0.0, end - time.monotonic())) for e in self._ready)

    def go(self) -> None:
        self._go.set()

    def completed(self) -> int:
        return sum(int(c.value) for c in self._counters)

    def running(self) -> bool:
        return any(p.is_alive() for p in self._procs)

    def halt(self) -> None:
        """Ask the load to end within a tick (the server died): its figures are kept."""
        self._go.set()
        self._halt.set()

    def stop(self) -> None:
        """Kill what is still running (after :meth:`result`, or when interrupted)."""
        for p in self._procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, 9)
        for p in self._procs:
            p.join(5)

    def result(self) -> LoadResult:
        total = LoadResult()
        for pipe, p in zip(self._pipes, self._procs, strict=True):
            if pipe.poll(10):
                with contextlib.suppress(EOFError, OSError):
                    doc = pipe.recv()
                    total.merge(
                        LoadResult(
                            int(doc["ok"]),
                            dict(doc["errors"]),
                            float(doc["duration_s"]),
                            Histogram.from_dict(doc["latency"]),
                        )
                    )
            else:
                total.errors["load process lost"] = total.errors.get("load process lost", 0) + 1
            p.join(5)
            pipe.close()
        return total
