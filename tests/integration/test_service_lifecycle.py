"""SIGTERM, in-flight requests and forked workers, against the real server."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.integration.service_server import HOST, serving, status_of

pytestmark = pytest.mark.timeout(120)


def test_sigterm_when_idle_exits_within_two_seconds() -> None:
    with serving() as server:
        assert server.get("/").status == 200
        started = time.monotonic()
        server.proc.terminate()
        assert server.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 2, server.log()
    assert "Granian shutdown completed" in server.log()


def test_sigterm_lets_the_in_flight_request_complete() -> None:
    body = b'{"a": "bcdef"}'
    with serving() as server, socket.create_connection((HOST, server.port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.sendall(body[:5])
        assert server.get("/healthz").status == 200  # the POST has reached a thread by now
        server.proc.terminate()
        time.sleep(0.5)  # the server is shutting down while the request waits for its body
        s.sendall(body[5:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert status_of(reply) == 200, reply
        doc = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert doc == {"bytes": len(body), "echo": {"a": "fedcb"}}
        assert server.proc.wait(timeout=10) == 0


def test_every_forked_worker_restores_jemalloc_background_thread(jemalloc: str) -> None:
    with serving(
        WEB_CONCURRENCY="2", LD_PRELOAD=jemalloc, MALLOC_CONF="background_thread:true"
    ) as server:
        seen: dict[int, dict[str, bool]] = {}
        for _ in range(400):  # new connections spread over the workers; bounded
            doc = server.get("/stats").json()
            seen[doc["pid"]] = doc["worker"]["background_thread"]
            if len(seen) == 2:
                break
        assert len(seen) == 2, f"only reached workers {list(seen)}"
        for state in seen.values():
            assert state == {"requested": True, "live": True, "restored": True}
        started = server.events("worker_started")
        assert sorted(e["pid"] for e in started) == sorted(seen)
        assert all(e["background_thread"]["live"] for e in started)


def test_without_background_thread_nothing_is_turned_on(jemalloc: str) -> None:
    with serving(LD_PRELOAD=jemalloc) as server:
        state = server.get("/stats").json()["worker"]["background_thread"]
        assert state == {"requested": False, "live": False, "restored": False}


def test_logs_are_one_json_line_per_event() -> None:
    with serving() as server:
        server.get("/")
    [launch] = server.events("launch")
    assert launch["server"] == "granian" and launch["threads"] == 5 and launch["workers"] == 1
    assert launch["host"] == HOST and launch["port"] == server.port
    [worker] = server.events("worker_started")
    assert worker["allocator"].startswith("glibc")
