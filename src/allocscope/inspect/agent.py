"""The agent's server: the node collector behind granian, bounded whatever its clients do.

prometheus_client's ``start_http_server`` takes a thread per connection with no read
deadline: 1,500 clients sending headers slowly took an agent to 1,502 threads, 197 MB
and a node's load average to 278, and SIGTERM did nothing for 13 s (issue 16). granian
(already in the image, Rust's hyper underneath) holds connections as tasks, not threads:

- at most ``connections`` connections are served at once (granian's backpressure: past
  it the server stops accepting and the kernel's backlog of ``backlog`` holds the rest,
  then refuses them), so memory is bounded by ``connections`` x ``buffer_bytes``;
- a connection must deliver its request line and headers within ``header_timeout_ms``
  (hyper cuts it then), and the headers within ``buffer_bytes``;
- the application never reads a request body (only GET and HEAD are answered): a client
  that trickles one holds nothing but its own connection, until the header deadline of
  its next request cuts it;
- ``threads`` Python threads run the application, whatever the number of clients; a
  collection is shared by every scrape that arrives while it runs or within
  ``fresh_s`` after, so 50 scrapers cost one collection a second, not 50;
- SIGTERM stops the worker within ``stop_s`` even when clients hold connections open.
"""

from __future__ import annotations

import functools
import gzip
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from allocscope import procctl
from allocscope.inspect.agent_limits import Limits

PATHS = ("/metrics", "/")
ENCODE, CONTENT_TYPE = choose_encoder("")  # the classic text format every Prometheus reads


class Rendered:
    """The collector's exposition, made once for every scrape within ``fresh_s`` of it.

    One collection at a time: scrapes that arrive while it runs wait for it and share it.
    The gzip form is compressed once per collection, when first asked for."""

    def __init__(self, collector: Collector, fresh_s: float) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)
        self._fresh = fresh_s
        self._lock = threading.Lock()
        self._plain = self._gzip = b""
        self._done = float("-inf")

    def body(self, gzipped: bool) -> bytes:
        with self._lock:
            if time.monotonic() - self._done >= self._fresh:
                self._plain, self._gzip = ENCODE(self._registry), b""
                self._done = time.monotonic()
            if gzipped and not self._gzip:
                self._gzip = gzip.compress(self._plain, compresslevel=1)
            return self._gzip if gzipped else self._plain


Start = Callable[[str, list[tuple[str, str]]], Any]
App = Callable[[dict[str, Any], Start], Iterable[bytes]]


def wsgi_app(collector: Collector, fresh_s: float) -> App:
    """GET /metrics (or /) in Prometheus' text format; nothing reads a request body."""
    rendered = Rendered(collector, fresh_s)

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
            return _answer(
                start, "405 Method Not Allowed", b"only GET and HEAD\n", ("Allow", "GET, HEAD")
            )
        if environ.get("PATH_INFO") not in PATHS:
            return _answer(start, "404 Not Found", b"metrics are at /metrics\n")
        gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        body = rendered.body(gzipped)
        extra = [("Content-Encoding", "gzip")] if gzipped else []
        answer = _answer(start, "200 OK", body, ("Content-Type", CONTENT_TYPE), *extra)
        return [] if method == "HEAD" else answer

    return app


def _answer(start: Start, status: str, body: bytes, *headers: tuple[str, str]) -> list[bytes]:
    if not any(name == "Content-Type" for name, _ in headers):
        headers = (("Content-Type", "text/plain"), *headers)
    start(status, [*headers, ("Content-Length", str(len(body)))])
    return [body]


def loader(collector: Callable[[], Collector], fresh_s: float) -> Callable[[str], App]:
    """What granian calls in its worker to build the app. Picklable: where
    multiprocessing spawns (Python 3.14's default start method is forkserver, which
    granian turns into spawn) the loader travels to the worker by pickle."""
    return functools.partial(_load, os.getpid(), collector, fresh_s)


def _load(main: int, collector: Callable[[], Collector], fresh_s: float, _name: str) -> App:
    procctl.die_with_parent(main)  # in the worker: a SIGKILLed agent leaves no worker
    return wsgi_app(collector(), fresh_s)


def serve(collector: Callable[[], Collector], host: str, port: int, limits: Limits) -> None:
    """Serve until SIGTERM or SIGINT (granian's main process handles both).

    ``collector`` (picklable: a class or a ``functools.partial`` of one) is called in the
    worker process."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    server = Server(
        "allocscope-agent",  # a name only: the loader below builds the application
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=1,
        runtime_threads=1,
        blocking_threads=limits.threads,
        http=HTTPModes.http1,
        websockets=False,
        backlog=limits.backlog,
        backpressure=limits.connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=limits.header_timeout_ms, max_buffer_size=limits.buffer_bytes
        ),
        log_level=LogLevels.warning,
        # typed int, but a float works (only its CLI wants whole seconds)
        workers_kill_timeout=limits.stop_s,  # type: ignore[arg-type]
    )
    try:
        server.serve(target_loader=loader(collector, limits.fresh_s))
    except RuntimeError as e:  # granian's bind error: "Address already in use (os error 98)"
        if "(os error" not in str(e):
            raise
        raise OSError(str(e).splitlines()[0]) from None
