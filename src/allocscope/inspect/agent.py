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

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from allocscope.inspect.agent_limits import Limits

PATHS = ("/metrics", "/")


class Shared(Collector):
    """One collection at a time, reused by every scrape within ``fresh_s`` of its end."""

    def __init__(self, inner: Collector, fresh_s: float) -> None:
        self._inner, self._fresh = inner, fresh_s
        self._lock = threading.Lock()
        self._metrics: list[Metric] = []
        self._done = float("-inf")

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # scrapes that arrive meanwhile wait here and reuse the result
            if time.monotonic() - self._done >= self._fresh:
                self._metrics = list(self._inner.collect())
                self._done = time.monotonic()
            return iter(self._metrics)


Start = Callable[[str, list[tuple[str, str]]], Any]


def wsgi_app(
    collector: Collector, fresh_s: float
) -> Callable[[dict[str, Any], Start], Iterable[bytes]]:
    """GET /metrics (or /) answered by prometheus_client; nothing reads a request body."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Shared(collector, fresh_s))
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(
                start, "405 Method Not Allowed", b"only GET and HEAD\n", ("Allow", "GET, HEAD")
            )
        if environ.get("PATH_INFO") not in PATHS:
            return _plain(start, "404 Not Found", b"metrics are at /metrics\n")
        return metrics(environ, start)  # type: ignore[no-any-return]

    return app


def _plain(start: Start, status: str, body: bytes, *extra: tuple[str, str]) -> list[bytes]:
    length = str(len(body))
    start(status, [("Content-Type", "text/plain"), ("Content-Length", length), *extra])
    return [body]


def serve(collector: Callable[[], Collector], host: str, port: int, limits: Limits) -> None:
    """Serve until SIGTERM or SIGINT (granian's main process handles both).

    ``collector`` is called in the worker process, after fork."""
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
        workers_kill_timeout=limits.stop_s,
    )
    try:
        server.serve(target_loader=lambda _name: wsgi_app(collector(), limits.fresh_s))
    except RuntimeError as e:  # granian's bind error: "Address already in use (os error 98)"
        if "(os error" not in str(e):
            raise
        raise OSError(str(e).splitlines()[0]) from None
