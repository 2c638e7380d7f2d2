"""A WSGI app that returns a constant JSON body of GET /'s size: the server's own ceiling.

service_throughput.py runs it on the same granian configuration as the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"constant":"' + b"x" * 380 + b'"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def create_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", HEADERS)
        return [BODY]

    return app
