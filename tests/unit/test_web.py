"""allocscope.web's routing, and its WSGI/ASGI adapters driven directly (no server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CollectorRegistry

from allocscope import web
from allocscope.prometheus import AllocscopeCollector


def registry() -> CollectorRegistry:
    r = CollectorRegistry()
    r.register(AllocscopeCollector(server=""))
    return r


def wsgi(path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(web.wsgi_app(registry())({"PATH_INFO": path, "REQUEST_METHOD": method}, start))
    return seen["status"], seen["headers"], body


def asgi(path: str, root_path: str = "", method: str = "GET") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "root_path": root_path, "method": method,
             "headers": [(b"accept", b"text/plain")]}  # fmt: skip
    asyncio.run(web.asgi_app(registry())(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_wsgi_routes_relative_to_the_mount() -> None:
    status, headers, body = wsgi("")
    assert status == "200 OK" and headers["Content-Type"] == "application/json"
    assert json.loads(body)["allocator_name"] in ("glibc", "jemalloc", "tcmalloc", "mimalloc")
    assert int(headers["Content-Length"]) == len(body)
    status, headers, body = wsgi("/metrics")
    assert status == "200 OK" and b"allocscope_allocator_info{" in body
    status, _, body = wsgi("/readyz")
    assert (status == "200 OK") == json.loads(body)["ready"]  # 503 exactly when not ready
    assert wsgi("/nope")[0] == "404 Not Found"
    assert wsgi("/metrics", "POST")[0] == "405 Method Not Allowed"
    status, headers, body = wsgi("/", "HEAD")
    assert status == "200 OK" and body == b"" and int(headers["Content-Length"]) > 0


def test_asgi_strips_the_mount_prefix_kept_in_path() -> None:
    # Starlette's Mount passes the full path and the prefix as root_path.
    status, body = asgi("/allocscope/metrics", root_path="/allocscope")
    assert status == 200 and b"allocscope_allocator_info{" in body
    status, body = asgi("/readyz")
    assert status in (200, 503)
    assert asgi("/allocscope/nope", root_path="/allocscope")[0] == 404
