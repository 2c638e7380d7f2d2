"""Small WSGI and ASGI apps that any application mounts under a prefix of its choice.

    GET {prefix}/          this process's allocator, FIPS state, background thread and RSS (JSON)
    GET {prefix}/metrics   the Prometheus text (needs the ``prometheus`` extra)
    GET {prefix}/readyz    200 when every check passes, else 503 with the reasons

Flask (WSGI, with werkzeug's dispatcher)::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from allocscope.web import wsgi_app
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/allocscope": wsgi_app()})

FastAPI / Starlette (ASGI)::

    from allocscope.web import asgi_app
    app.mount("/allocscope", asgi_app())

The answers come from ``allocscope.this_process`` (detected once per pid) plus fresh memory and
heap reads, so they are cheap enough for probes every few seconds. ``/metrics`` uses the
given registry, else one with ``AllocscopeCollector``, else (``PROMETHEUS_MULTIPROC_DIR``
set) every worker's series through prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from allocscope import forksafe, this_process
from allocscope.api import Verdict
from allocscope.probe import memory

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["asgi_app", "handle", "wsgi_app"]

JSON = "application/json"
Reply = tuple[int, str, bytes]  # status, content type, body
StartResponse = Callable[..., Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip


def _json(status: int, doc: object) -> Reply:
    return status, JSON, json.dumps(doc, separators=(",", ":")).encode()


def allocator_doc() -> dict[str, Any]:
    """GET /: what serves malloc here, FIPS, the background thread, and RSS now."""
    f = this_process.current()
    a, bt = f.allocator, forksafe.background_thread()
    return {
        "pid": f.pid,
        "server": this_process.server(),
        "allocator": a.label,
        "allocator_name": a.name,
        "allocator_version": a.version,
        "ld_preload": a.declared.ld_preload,
        "malloc_conf": a.declared.malloc_conf,
        "background_thread": asdict(bt) if bt else None,
        "fips": {"state": f.fips.state, "reason": f.fips.reason},
        "warnings": list(a.warnings),
        "rss_bytes": memory.read(rollup=False).rss_bytes,
    }


def readiness() -> Reply:
    verdict = Verdict(tuple(this_process.current().checks()))
    doc = {
        "ready": verdict.passed,
        "pid": os.getpid(),
        "failed": verdict.reasons(),
        "checks": [asdict(c) for c in verdict.checks],
    }
    return _json(200 if verdict.passed else 503, doc)


class Metrics:
    """Renders the registry; built on first use so the prometheus extra stays optional."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._registry = registry
        if registry is None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from allocscope.multiprocess import start

            start()  # publish from the moment the app exists, not from the first scrape

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from allocscope.multiprocess import scrape_registry

            self._registry = scrape_registry()
        return self._registry

    def __call__(self, accept: str) -> Reply:
        from prometheus_client.exposition import choose_encoder

        encode, content_type = choose_encoder(accept)
        return 200, content_type, encode(self.registry())


def handle(path: str, method: str, accept: str, metrics: Metrics) -> Reply:
    """One request, whatever the server: (status, content type, body). Never raises."""
    path = "/" + path.strip("/")
    routes: dict[str, Callable[[], Reply]] = {
        "/": lambda: _json(200, allocator_doc()),
        "/metrics": lambda: metrics(accept),
        "/readyz": readiness,
    }
    route = routes.get(path)
    if route is None:
        return _json(404, {"error": "no such path", "status": 404})
    if method not in ("GET", "HEAD"):
        return _json(405, {"error": f"{method} not allowed", "status": 405})
    try:
        return route()
    except Exception as e:  # a probe endpoint answers, even about its own failure
        return _json(500, {"error": f"allocscope could not answer: {e!r}", "status": 500})


def _headers(content_type: str, body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("Content-Length", str(len(body)))]


def wsgi_app(
    registry: CollectorRegistry | None = None,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app answering /, /metrics and /readyz relative to where it is mounted."""
    metrics = Metrics(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status, content_type, body = handle(
            environ.get("PATH_INFO", "/"), method, environ.get("HTTP_ACCEPT", ""), metrics
        )
        start_response(f"{status} {_REASONS[status]}", _headers(content_type, body))
        return [b"" if method == "HEAD" else body]

    return app


def asgi_app(
    registry: CollectorRegistry | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI (3.0) app answering /, /metrics and /readyz relative to where it is mounted."""
    metrics = Metrics(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        path, root = scope.get("path", "/"), scope.get("root_path", "")
        if root and path.startswith(root):  # Starlette's Mount keeps the prefix in path
            path = path[len(root) :]
        headers = dict(scope.get("headers") or [])
        method = scope.get("method", "GET")
        status, content_type, body = handle(
            path, method, headers.get(b"accept", b"").decode("latin-1"), metrics
        )
        raw = [(k.lower().encode(), v.encode()) for k, v in _headers(content_type, body)]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return app
