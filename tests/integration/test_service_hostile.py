"""Hostile requests over raw sockets: each gets a 4xx or a closed connection, and the server
goes on serving. What answers is recorded per case: hyper (inside granian) or our app."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import child_env
from tests.integration.service_server import HOST, Server, serving, status_of

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.timeout(120)

HEADER_TIMEOUT_MS = 1000
MAX_HEADER_BYTES = 8192


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving(
        ALLOCSCOPE_HEADER_TIMEOUT_MS=str(HEADER_TIMEOUT_MS),
        ALLOCSCOPE_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        ALLOCSCOPE_MAX_BODY_BYTES="4096",
        ALLOCSCOPE_THREADS="3",
    ) as server:
        yield server


def _headers(n: int) -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(n))


# case -> (request bytes, the status granian/our app answers; None: the connection closes)
HOSTILE: dict[str, tuple[bytes, int | None]] = {
    # hyper reports an over-long head (request line included) as 431, then closes.
    "oversized request line": (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    "oversized header": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
        431,
    ),
    # hyper's limit is 100 headers.
    "too many headers": (b"GET / HTTP/1.1\r\nHost: x\r\n" + _headers(150) + b"\r\n", 431),
    # RFC 9112 6.3: Transfer-Encoding wins and Content-Length is dropped; we then require a
    # length (411) and close, so no smuggled bytes are read as a next request.
    "transfer-encoding and content-length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        411,
    ),
    "malformed chunked": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\n{}\r\n0\r\n\r\n",
        411,
    ),
    "two content-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        400,
    ),
    "negative content-length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
        400,
    ),
    "body past the limit": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"[" * 5000,
        413,
    ),
    "bare CR in a header value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rInjected: b\r\n\r\n", 400),
    "space in a header name": (b"GET / HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n", 400),
    "NUL in a header value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "CRLF in the request target": (b"GET /a\r\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "not HTTP at all": (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"x" * 64 + b"\r\n\r\n",
        400,
    ),
    # HTTP/2 is off (--http 1): the preface is refused by closing.
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_request_is_refused_and_server_keeps_serving(server: Server, case: str) -> None:
    data, expected = HOSTILE[case]
    reply = server.raw(data)
    status = status_of(reply)
    if expected is None:
        assert reply == b"<closed>", reply[:200]
    else:
        assert status == expected, reply[:300]
        assert 400 <= status < 500
    if status is not None and status >= 400:
        assert reply.endswith(b"<closed>"), f"connection left open after {status}"
    assert b"smuggled" not in reply
    assert server.get("/healthz").status == 200


def test_crlf_cannot_inject_a_response_header(server: Server) -> None:
    """A header value that carries a line break never reaches the app as two headers."""
    reply = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Injected: b\r\n\r\n")
    # obs-fold: hyper rejects it (400) rather than folding it into X-A.
    assert status_of(reply) == 400
    assert b"injected" not in reply.lower()


def test_slow_client_is_dropped_while_others_are_served(server: Server) -> None:
    """Slowloris: headers that never finish. Others get answers meanwhile; the slow one is
    closed by the header read timeout (1 s here), well within a generous bound."""
    with socket.create_connection((HOST, server.port), timeout=10) as slow:
        started = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        for _ in range(20):
            assert server.get("/").status == 200
        try:
            data = slow.recv(1024)
        except ConnectionError:
            data = b""
        dropped_after = time.monotonic() - started
    assert not data.startswith(b"HTTP/1.1 200")
    assert dropped_after < HEADER_TIMEOUT_MS / 1000 + 5
    assert server.get("/healthz").status == 200


def test_many_slow_clients_do_not_starve_the_server(server: Server) -> None:
    slow = [socket.create_connection((HOST, server.port), timeout=10) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\n")
        assert all(server.get("/healthz").status == 200 for _ in range(10))
    finally:
        for s in slow:
            s.close()


def test_stalled_bodies_leave_a_thread_for_everyone_else(server: Server) -> None:
    """granian has no body read timeout: a client that sends headers and stalls holds a
    request thread. The app lets at most threads-1 (2 here) wait on bodies; the next POST
    gets 503 without waiting and GETs are still answered."""
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    stalled = [socket.create_connection((HOST, server.port), timeout=10) for _ in range(2)]
    try:
        for s in stalled:
            s.sendall(head)
        time.sleep(0.3)  # let both reach the application and block in read()
        reply = server.raw(head, wait=3)
        assert status_of(reply) == 503, reply[:200]
        assert server.get("/healthz").status == 200
        results: list[int] = []
        getter = threading.Thread(target=lambda: results.append(server.get("/").status))
        getter.start()
        getter.join(10)
        assert results == [200]
    finally:
        for s in stalled:
            s.close()
    # Once the stalled clients leave, their threads come back and POSTs work again.
    deadline = time.monotonic() + 10
    while server.request("POST", "/echo", b"{}").status != 200:
        assert time.monotonic() < deadline, "body slots never came back"
        time.sleep(0.1)


def test_health_answers_while_50_clients_sustain_stalled_bodies() -> None:
    """Issue 9 item 1: 50 connections stall POST bodies (reopened as soon as they are
    closed) while GET /healthz, /readyz, /metrics and / are probed on fresh connections for
    2 s. Every probe answers 200; the bound (1 s) only catches starvation, which took 2.4 s
    to time-outs before. The p99 figure is benchmarks/stalled_bodies.py's job."""
    proc = subprocess.run(
        [sys.executable, "stalled_bodies.py", "--seconds", "2", "--stalled", "50", "--json"],
        cwd=BENCHMARKS,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["reopened"] > 0  # the server refused stalled POSTs and the stall went on
    for path, r in doc["stalled"].items():
        assert r["probes"] > 10 and r["failed"] == 0, (path, r)
        assert r["max_ms"] < 1000, (path, r)


def test_honest_concurrent_posts_are_not_refused(server: Server) -> None:
    """The gate refuses only when every body slot is held by a stalled read: 8 clients
    posting at once to 3 threads all get answers."""
    body = json.dumps({"k": list(range(200))}).encode()

    def post(_: int) -> int:
        return server.request("POST", "/echo", body).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(200)))
    assert statuses == [200] * 200
