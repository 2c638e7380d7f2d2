"""The WSGI application: the probe over HTTP.

granian loads ``create_app`` in each worker process after fork, so everything that cannot
change while the process lives (allocator, FIPS state, runtime, and so the readiness
checks) is detected there, once per worker; every request reads memory fresh.

Limits enforced here, because granian has no such setting: request bodies (``Content-Length``
required on POST, 411 without it, 400 when it is not a number, 413 past
``ALLOCSCOPE_MAX_BODY_BYTES`` before a byte is read) and how many requests may wait on a
body at once (see ``BodyGate``). Request line and header size, header count and the header
read timeout are granian's (hyper's) and are set by the launcher.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from allocscope import facts, forksafe
from allocscope.expectations import Expectations, check
from allocscope.probe import snapshot
from allocscope.prometheus import AllocscopeCollector
from allocscope.service.launch import Settings, log_event

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
Headers = list[tuple[str, str]]

JSON = "application/json"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Rss:
    """Resident set size from ``/proc/self/statm`` with one ``pread`` (about 1.5 µs).

    ``memory.read`` parses /proc/self/status (about 50 µs), which would cap GET / at a
    fraction of the server's throughput. The file is opened in the worker, after fork:
    /proc/self opened in the parent would go on describing the parent.
    """

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __call__(self) -> int:
        return int(os.pread(self._fd, 256, 0).split()[1]) * self._page


class UtcClock:
    """ISO-8601 UTC to the second, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            self._second = now  # after the text: a reader that sees the second sees its text
        return self._text


class BodyGate:
    """At most ``slots`` requests read a body at once, so GETs always find a thread.

    granian streams the body to the application and has no body read timeout (only one for
    headers; upstream declined one), so ``wsgi.input.read()`` blocks for as long as a client
    that sent its headers and then stalls likes. Such clients could hold every request
    thread; the gate keeps one free. A POST waits up to ``wait`` seconds for a slot (under
    honest load a read takes milliseconds, so it gets one), then gets 503 without a byte of
    its body read, and the connection is closed. (Reading on helper threads with a deadline
    was tried: answering while a helper still waited on the body froze the whole worker in
    granian 2.8.)
    """

    def __init__(self, slots: int, wait: float = 0.25) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._wait = wait

    def read(self, stream: Any, length: int) -> bytes | None:
        """The body, or None when no slot came free in time."""
        if not self._slots.acquire(timeout=self._wait):
            return None
        try:
            return bytes(stream.read(length))
        finally:
            self._slots.release()


@dataclass(frozen=True)
class BackgroundThread:
    """jemalloc's background purging thread in this worker (fork() leaves it off)."""

    requested: bool  # opt.background_thread: what MALLOC_CONF asked for
    live: bool  # the state now
    restored: bool  # this worker turned it back on after fork


class Worker:
    """What one worker process knows about itself, detected once at start-up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        detected = facts.current()  # the same record the collector reads
        self.pid = detected.pid
        self.allocator, self.fips, self.runtime = (
            detected.allocator,
            detected.fips,
            detected.runtime,
        )
        self.expectations = Expectations.from_environ()
        self.rss = Rss()
        # Threads do not survive fork(): turn jemalloc's back on if MALLOC_CONF asked.
        self.after_fork = forksafe.after_fork()
        if self.after_fork.action == "failed":
            log_event("background_thread_failed", pid=self.pid, error=self.after_fork.detail)
        # Every expectation is about facts fixed for the process's life (the allocator, its
        # opt.* values, FIPS as probed above): judged once, not on every readiness probe.
        self.checks = tuple(check(self.snapshot(), self.expectations))
        self.server = f"granian {self.runtime.packages.get('granian', 'unknown')}"

    def background_thread(self) -> BackgroundThread | None:
        bt = forksafe.background_thread()
        if bt is None:
            return None
        return BackgroundThread(bt.requested, bt.live, self.after_fork.restored)

    def snapshot(self) -> snapshot.Snapshot:
        return snapshot.snapshot(allocator=self.allocator, fips=self.fips, runtime=self.runtime)

    def info_prefix(self) -> str:
        """GET /'s fields that cannot change, serialised once, left open for the rest."""
        a = self.allocator
        static = {
            "pid": self.pid,
            "python_version": self.runtime.python_version,
            "python_platform": self.runtime.platform,
            "server": self.server,
            "allocator": a.label,
            "allocator_name": a.name,
            "allocator_version": a.version,
            "ld_preload": a.declared.ld_preload,
            "malloc_conf": a.declared.malloc_conf,
            "fips": {"state": self.fips.state, "reason": self.fips.reason},
        }
        return json.dumps(static, separators=(",", ":"))[:-1]


def respond(
    start: StartResponse,
    status: int,
    body: bytes,
    content_type: str = JSON,
    extra: Headers | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start(f"{status} {_REASONS.get(status, '')}", headers + (extra or []))
    return [body]


def respond_json(
    start: StartResponse, status: int, doc: object, extra: Headers | None = None
) -> list[bytes]:
    return respond(start, status, json.dumps(doc, separators=(",", ":")).encode(), extra=extra)


def error(start: StartResponse, status: int, message: str, close: bool = False) -> list[bytes]:
    """A JSON error; ``close`` when the request body was not read, so it cannot be reused."""
    extra = [("Connection", "close")] if close else None
    return respond_json(start, status, {"error": message, "status": status}, extra)


def transform(value: Any) -> Any:
    """/echo's work: rebuild the document (keys sorted, strings reversed, numbers doubled)."""
    if isinstance(value, dict):
        return {k[::-1]: transform(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [transform(v) for v in reversed(value)]
    if isinstance(value, str):
        return value[::-1]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value * 2
    return value


class App:
    """Routes by exact path; every handler takes (environ, start_response)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AllocscopeCollector(server=worker.server))
        self._prefix = worker.info_prefix()
        self._clock, self._rss = UtcClock(), worker.rss
        self._get: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
            "/": self.info,
            "/stats": self.stats,
            "/metrics": self.metrics,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
        }
        self._post = {"/echo": self.echo}
        self.body = BodyGate(max(1, worker.settings.threads - 1))

    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        try:
            if path == "/" and method == "GET":  # the hot path, first
                return self.info(environ, start)
            if method in ("GET", "HEAD") and path in self._get:
                return self._get[path](environ, start)
            if method == "POST" and path in self._post:
                return self._post[path](environ, start)
            if path in self._get or path in self._post:
                allow = "GET, HEAD" if path in self._get else "POST"
                doc = {"error": f"{method} not allowed", "status": 405}
                return respond_json(start, 405, doc, extra=[("Allow", allow)])
            return error(start, 404, "no such path")
        except Exception as e:  # one line per failure; the client gets a plain 500
            log_event("request_failed", pid=self.worker.pid, path=path, error=repr(e))
            return error(start, 500, "internal error", close=True)

    def info(self, environ: Environ, start: StartResponse) -> list[bytes]:
        body = f'{self._prefix},"time":"{self._clock()}","rss_bytes":{self._rss()}}}'.encode()
        start("200 OK", [("Content-Type", JSON), ("Content-Length", str(len(body)))])
        return [body]

    def stats(self, environ: Environ, start: StartResponse) -> list[bytes]:
        doc = self.worker.snapshot().to_dict()
        bt = self.worker.background_thread()
        doc["worker"] = {
            "pid": self.worker.pid,
            "server": self.worker.server,
            "threads": self.worker.settings.threads,
            "background_thread": asdict(bt) if bt else None,
        }
        return respond_json(start, 200, doc)

    def metrics(self, environ: Environ, start: StartResponse) -> list[bytes]:
        return respond(start, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def healthz(self, environ: Environ, start: StartResponse) -> list[bytes]:
        return respond_json(start, 200, {"status": "alive", "pid": self.worker.pid})

    def readyz(self, environ: Environ, start: StartResponse) -> list[bytes]:
        checks = self.worker.checks
        failed = [c for c in checks if not c.passed]
        doc = {
            "ready": not failed,
            "pid": self.worker.pid,
            "failed": [f"{c.name}: {c.detail}" for c in failed],
            "checks": [asdict(c) for c in checks],
        }
        return respond_json(start, 503 if failed else 200, doc)

    def echo(self, environ: Environ, start: StartResponse) -> list[bytes]:
        length = environ.get("CONTENT_LENGTH", "")
        if not length:
            return error(start, 411, "POST /echo needs a Content-Length", close=True)
        if not (length.isascii() and length.isdigit()):
            return error(start, 400, "Content-Length is not a number", close=True)
        limit = self.worker.settings.max_body_bytes
        if int(length) > limit:
            return error(start, 413, f"body over {limit} bytes", close=True)
        raw = self.body.read(environ["wsgi.input"], int(length))
        if raw is None:
            return error(start, 503, "every body slot waits on a client; retry", close=True)
        try:
            doc = json.loads(raw)
        except ValueError as e:  # UnicodeDecodeError is a ValueError too
            return error(start, 400, f"invalid JSON: {e}")
        return respond_json(start, 200, {"bytes": len(raw), "echo": transform(doc)})


def create_app() -> App:
    """granian's factory: runs once in each worker, after fork."""
    worker = Worker(Settings.from_environ())
    bt = worker.background_thread()
    log_event(
        "worker_started",
        pid=worker.pid,
        allocator=worker.allocator.label,
        fips=worker.fips.state,
        background_thread=asdict(bt) if bt else None,
        warnings=list(worker.allocator.warnings),
    )
    return App(worker)
