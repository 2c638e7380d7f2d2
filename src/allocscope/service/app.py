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

import ctypes
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from allocscope import forksafe, this_process
from allocscope.api import Verdict
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
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Rss:
    """Resident set size from ``/proc/self/statm``, never more than ``max_age`` old (1 ms).

    ``memory.read`` parses /proc/self/status (about 50 µs), which would cap GET / at a
    fraction of the server's throughput. Profiled in-process, this read was most of GET /'s
    own cost (2.7 µs a call against 0.13 µs for a constant body), so at 40k requests a
    second the requests of one millisecond share one read: GET / then costs about 1.2 µs.
    The read itself goes through ``ctypes.PyDLL``, which keeps the GIL for the ~1 µs
    syscall (a /proc read never blocks): ``os.pread`` releases it, and getting it back
    while other threads run Python took 23 µs instead of 2.4 µs (measured with two
    threads spinning). The file is opened in the worker, after fork: /proc/self opened in
    the parent would go on describing the parent.
    """

    def __init__(self, max_age: float = 0.001) -> None:
        self._fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        self._page = os.sysconf("SC_PAGE_SIZE")
        pread = ctypes.PyDLL(None, use_errno=True).pread
        pread.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long)
        pread.restype = ctypes.c_ssize_t
        self._pread = pread
        self._local = threading.local()
        self._max_age = int(max_age * 1e9)
        self._read_at = -self._max_age  # monotonic ns of the last read
        self._value = 0

    def __call__(self) -> int:
        now = time.monotonic_ns()
        if now - self._read_at >= self._max_age:
            self._value = self.read()
            self._read_at = now  # after the value: a reader that sees the time sees its value
        return self._value

    def read(self) -> int:
        """RSS now, in bytes."""
        try:
            buf = self._local.buf
        except AttributeError:
            buf = self._local.buf = ctypes.create_string_buffer(128)
        n = self._pread(self._fd, buf, 128, 0)
        if n <= 0:
            raise OSError(ctypes.get_errno(), "cannot read /proc/self/statm")
        return int(buf.raw[:n].split()[1]) * self._page


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
    """At most ``slots`` requests read a body at once, and a stalled body never makes
    another request wait: GET /healthz, /readyz, /metrics and / always find a thread.

    granian streams the body to the application and has no body read timeout (only one for
    headers; upstream declined one), so ``wsgi.input.read()`` blocks for as long as a client
    that sent its headers and then stalls likes. Such clients could hold every request
    thread; the gate keeps one free. When every slot is taken, a POST waits for one (up to
    ``wait`` seconds) only while some holder is still young (under ``stalled`` seconds in
    its read: honest bodies arrive in milliseconds, so a slot comes free soon). When every
    holder is older, they are stalled clients and no slot will come: the POST gets 503 at
    once, without a byte of its body read, and its connection is closed. Waiting there
    instead held the one free thread 0.25 s per refused POST, and 40 stalled clients
    starved /healthz for seconds (issue 9). There is no body deadline: reading on helper
    threads with one was tried (answering while a helper still waited on the body froze
    the worker in granian 2.8), and shutting the socket at a deadline needs the client's
    port, which granian's WSGI environ does not carry (REMOTE_ADDR only). So a client that
    stalls forever keeps its slot until its connection ends; it costs POSTs a slot, never
    GETs a thread.
    """

    def __init__(self, slots: int, wait: float = 0.25, stalled: float = 0.05) -> None:
        self._slots, self._count = threading.BoundedSemaphore(slots), slots
        self._wait, self._stalled = wait, stalled
        self._since: dict[int, float] = {}  # thread id -> when its read began

    def read(self, stream: Any, length: int) -> bytes | None:
        """The body, or None when no slot is free and none is about to be."""
        free = self._slots.acquire(blocking=False)
        if not free and (self._all_stalled() or not self._slots.acquire(timeout=self._wait)):
            return None
        me = threading.get_ident()
        self._since[me] = time.monotonic()
        try:
            return bytes(stream.read(length))
        finally:
            del self._since[me]
            self._slots.release()

    def _all_stalled(self) -> bool:
        started = list(self._since.values())  # a holder not listed yet has just begun
        oldest_young = time.monotonic() - self._stalled
        return len(started) >= self._count and all(t < oldest_young for t in started)


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
        detected = this_process.current()  # the same record the collector reads
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


class Unanswerable(ValueError):
    """Valid JSON that /echo cannot answer with valid JSON (422, with this reason)."""


# Deeper documents are refused before the recursion in transform() or json.dumps could
# reach Python's limit (998 bytes of '[' used to end in a 500).
MAX_DEPTH = 64


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN and Infinity otherwise


class Echo:
    """/echo's work: rebuild the document (keys sorted, strings reversed, numbers doubled).

    Every answer is valid JSON or an ``Unanswerable``: a number whose double would be
    infinite, or have more digits than Python may print (``sys.get_int_max_str_digits``),
    is refused rather than clamped, and so is nesting past ``MAX_DEPTH``.
    """

    def __init__(self) -> None:
        self._digits = sys.get_int_max_str_digits()  # 0: no limit
        self._int_limit = 10**self._digits if self._digits else None  # first int too long

    def parse(self, raw: bytes) -> Any:
        return json.loads(raw, parse_constant=_reject_constant, parse_int=self._int)

    def _int(self, text: str) -> int:
        if self._digits and len(text.lstrip("-")) > self._digits:
            raise Unanswerable(f"a number of {len(text.lstrip('-'))} digits (limit {self._digits})")
        return int(text)

    def transform(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise Unanswerable(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            return {k[::-1]: self.transform(value[k], depth + 1) for k in sorted(value)}
        if isinstance(value, list):
            return [self.transform(v, depth + 1) for v in reversed(value)]
        if isinstance(value, str):
            return value[::-1]
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            doubled = value * 2
            if self._int_limit is not None and abs(doubled) >= self._int_limit:
                raise Unanswerable("a number doubled has more digits than Python prints")
            return doubled
        if isinstance(value, float):
            if not math.isfinite(value):
                raise Unanswerable("a number beyond a double's range")
            if not math.isfinite(value * 2):
                raise Unanswerable(f"{value!r} doubled is beyond a double's range")
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
        self._echo = Echo()
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
        verdict = Verdict(tuple(self.worker.checks))
        doc = {
            "ready": verdict.passed,
            "pid": self.worker.pid,
            "failed": verdict.reasons(),
            "checks": [asdict(c) for c in verdict.checks],
        }
        return respond_json(start, 200 if verdict.passed else 503, doc)

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
            doc = self._echo.parse(raw)
        except Unanswerable as e:
            return error(start, 422, str(e))
        except RecursionError:
            return error(start, 422, f"nesting deeper than {MAX_DEPTH} levels")
        except ValueError as e:  # UnicodeDecodeError is a ValueError too
            return error(start, 400, f"invalid JSON: {e}")
        try:
            answer = {"bytes": len(raw), "echo": self._echo.transform(doc)}
        except Unanswerable as e:
            return error(start, 422, str(e))
        return respond(start, 200, json.dumps(answer, separators=(",", ":")).encode())


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
