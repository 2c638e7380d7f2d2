"""The service's endpoints against the real granian server on loopback, under real allocators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import psutil
import pytest

from tests.conftest import JEMALLOC_VERSION, Families, families
from tests.integration.service_server import SERVE, Server, serving

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def glibc_server() -> Iterator[Server]:
    # Python's int digit limit at its minimum (640, default 4300) so it fits under the body
    # limit: /echo must follow the interpreter's limit, whatever it is.
    with serving(ALLOCSCOPE_MAX_BODY_BYTES="4096", PYTHONINTMAXSTRDIGITS="640") as server:
        yield server


@pytest.fixture(scope="module")
def jemalloc_server() -> Iterator[Server]:
    from allocscope import libraries

    path = libraries.find("jemalloc")
    if path is None:
        pytest.fail("jemalloc is not installed: run scripts/install-system-deps.sh")
    with serving(
        LD_PRELOAD=path,
        MALLOC_CONF="background_thread:true,dirty_decay_ms:1000",
        ALLOCSCOPE_EXPECT_ALLOCATOR="jemalloc",
    ) as server:
        yield server


def test_root_under_jemalloc(jemalloc_server: Server, jemalloc: str) -> None:
    reply = jemalloc_server.get("/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    assert doc["allocator"] == f"jemalloc {JEMALLOC_VERSION} (via LD_PRELOAD)"
    assert doc["allocator_name"] == "jemalloc"
    assert doc["ld_preload"] == jemalloc
    assert doc["malloc_conf"] == "background_thread:true,dirty_decay_ms:1000"
    assert doc["server"].startswith("granian 2.")
    assert doc["python_version"].count(".") == 2
    assert doc["python_platform"].startswith("Linux")
    assert doc["fips"]["state"] in ("off", "on", "enforced") and doc["fips"]["reason"]
    assert doc["time"].endswith("Z")
    datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    # The pid is the worker's (a child of the server process), and the RSS is that worker's.
    worker = psutil.Process(doc["pid"])
    assert worker.ppid() == jemalloc_server.proc.pid
    assert abs(doc["rss_bytes"] - worker.memory_info().rss) < 16 * 2**20


def test_root_under_glibc(glibc_server: Server) -> None:
    doc = glibc_server.get("/").json()
    assert doc["allocator"].startswith("glibc 2.")
    assert doc["allocator_name"] == "glibc"
    assert doc["ld_preload"] is None and doc["malloc_conf"] is None
    assert doc["rss_bytes"] > 1 << 20


def test_head_has_no_body(glibc_server: Server) -> None:
    reply = glibc_server.request("HEAD", "/")
    assert reply.status == 200 and reply.body == b""


def test_stats_carries_live_jemalloc_state_per_worker(jemalloc_server: Server) -> None:
    doc = jemalloc_server.get("/stats").json()
    assert doc["schema"] == "allocscope.snapshot/1"
    assert doc["allocator"]["name"] == "jemalloc"
    stats = doc["jemalloc"]["stats"]
    assert stats["allocated"] > 0 and stats["resident"] >= stats["active"] > 0
    # granian forks its worker even when there is one: the thread must have been restored.
    assert doc["worker"]["pid"] == doc["pid"]
    assert doc["worker"]["background_thread"] == {
        "requested": True,
        "live": True,
        "restored": True,
    }
    assert doc["memory"]["rss_bytes"] > 0


def test_stats_under_glibc_has_heap(glibc_server: Server) -> None:
    doc = glibc_server.get("/stats").json()
    assert doc["jemalloc"] is None
    assert doc["glibc"]["in_use_bytes"] > 0
    assert doc["worker"]["background_thread"] is None


def _families(server: Server) -> Families:
    reply = server.get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return families(reply.body.decode())


def test_metrics_parse_and_carry_allocator_and_fips(jemalloc_server: Server) -> None:
    pid = str(jemalloc_server.get("/").json()["pid"])
    fams = _families(jemalloc_server)
    [(labels, value)] = fams["allocscope_allocator_info"]
    assert value == 1 and labels["name"] == "jemalloc" and labels["version"] == JEMALLOC_VERSION
    assert labels["source"] == "LD_PRELOAD" and labels["pid"] == pid
    fips = {lab["state"]: v for lab, v in fams["allocscope_fips_state"]}
    assert set(fips) == {"off", "on", "enforced"} and sum(fips.values()) == 1
    kinds = {lab["kind"]: v for lab, v in fams["allocscope_allocator_bytes"]}
    assert {"allocated", "active", "resident", "mapped", "retained", "metadata"} <= set(kinds)
    assert kinds["allocated"] > 0
    assert fams["allocscope_jemalloc_background_thread"] == [({"pid": pid}, 1.0)]
    [(_, rss)] = fams["allocscope_process_resident_memory_bytes"]
    assert rss > 0
    [(build, _)] = fams["allocscope_build_info"]
    assert build["server"].startswith("granian") and build["python"]
    # Every series names its worker.
    assert all(lab["pid"] == pid for samples in fams.values() for lab, _ in samples)


def test_metrics_under_glibc(glibc_server: Server) -> None:
    fams = _families(glibc_server)
    [(labels, _)] = fams["allocscope_allocator_info"]
    assert labels["name"] == "glibc"
    kinds = {lab["kind"]: v for lab, v in fams["allocscope_allocator_bytes"]}
    books = {"arena", "free", "mmap", "releasable"}  # mallinfo2's
    assert set(kinds) == books | {"in_use", "free_resident", "returnable", "held"}
    assert kinds["held"] == kinds["in_use"] + kinds["free_resident"]
    [(_, anon)] = fams["allocscope_process_anonymous_memory_bytes"]
    assert kinds["free_resident"] <= anon


def test_healthz(glibc_server: Server) -> None:
    reply = glibc_server.get("/healthz")
    assert reply.status == 200 and reply.json()["status"] == "alive"


def test_readyz_ready_when_expectation_met(jemalloc_server: Server) -> None:
    reply = jemalloc_server.get("/readyz")
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["ready"] is True and doc["failed"] == []
    assert {c["name"] for c in doc["checks"]} >= {"allocator", "preload", "malloc_conf"}


def test_readyz_503_with_reason_when_unmet() -> None:
    # The launcher would refuse to start (exit 114); --no-startup-check lets it serve so
    # that readiness, not a crash loop, reports the problem.
    with serving((*SERVE, "--no-startup-check"), ALLOCSCOPE_EXPECT_ALLOCATOR="jemalloc") as server:
        reply = server.get("/readyz")
        assert reply.status == 503
        doc = reply.json()
        assert doc["ready"] is False
        [reason] = doc["failed"]
        assert reason.startswith("allocator: expected jemalloc, but glibc")
        assert server.get("/healthz").status == 200  # alive, just not ready


def test_echo_transforms_valid_json(glibc_server: Server) -> None:
    body = json.dumps({"name": "abc", "n": [1, 2.5, True, None], "nested": {"k": "xy"}})
    reply = glibc_server.request("POST", "/echo", body.encode())
    assert reply.status == 200
    assert reply.json() == {
        "bytes": len(body),
        "echo": {"eman": "cba", "detsen": {"k": "yx"}, "n": [None, True, 5.0, 2]},
    }


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"a": 1', b"\xff\xfe\x00", b""], ids=["syntax", "cut", "utf8", "empty"]
)
def test_echo_invalid_json_is_400(glibc_server: Server, body: bytes) -> None:
    reply = glibc_server.request("POST", "/echo", body)
    assert reply.status == 400
    assert reply.json()["error"].startswith("invalid JSON")


# Issue 9 item 2: valid JSON that cannot be answered is a 422 with a reason, never a 5xx
# and never invalid JSON (1e308 doubled is refused, not clamped: a clamp is a wrong number).
UNANSWERABLE = {
    "deep nesting": (b"[" * 499 + b"]" * 499, "nesting deeper than"),
    "a number at the digit limit doubles past it": (b"[" + b"9" * 640 + b"]", "more digits"),
    "a number past the digit limit": (b"[-" + b"9" * 641 + b"]", "641 digits"),
    "1e308 doubled": (b"[1e308]", "beyond a double's range"),
    "-1e308 doubled": (b'{"x": -1e308}', "beyond a double's range"),
    "1e400": (b"[1e400]", "beyond a double's range"),
}


@pytest.mark.parametrize("case", list(UNANSWERABLE))
def test_echo_unanswerable_json_is_422(glibc_server: Server, case: str) -> None:
    body, reason = UNANSWERABLE[case]
    reply = glibc_server.request("POST", "/echo", body)
    assert reply.status == 422, reply.body[:200]
    assert reason in reply.json()["error"]


@pytest.mark.parametrize("body", [b"[NaN]", b"[Infinity]", b'{"a": -Infinity}'])
def test_echo_nan_and_infinity_are_not_json(glibc_server: Server, body: bytes) -> None:
    reply = glibc_server.request("POST", "/echo", body)
    assert reply.status == 400
    assert "is not JSON" in reply.json()["error"]


def test_echo_answers_at_the_limits_are_valid_json(glibc_server: Server) -> None:
    from allocscope.service.app import MAX_DEPTH

    body = b"[" * MAX_DEPTH + b"1e307" + b"]" * MAX_DEPTH
    reply = glibc_server.request("POST", "/echo", body)
    assert reply.status == 200
    doc = json.loads(reply.body, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
    inner = doc["echo"]
    for _ in range(MAX_DEPTH):
        inner = inner[0]
    assert inner == 2e307


def test_echo_oversized_is_413_before_reading(glibc_server: Server) -> None:
    reply = glibc_server.request("POST", "/echo", b"[" + b"1," * 3000 + b"1]")
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    # A Content-Length alone is enough: the server answers without the body.
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    assert glibc_server.raw(head).startswith(b"HTTP/1.1 413")


def test_echo_without_content_length_is_411(glibc_server: Server) -> None:
    chunked = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert glibc_server.raw(chunked).startswith(b"HTTP/1.1 411")


def test_wrong_method_is_405_with_allow(glibc_server: Server) -> None:
    reply = glibc_server.request("GET", "/echo")
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    reply = glibc_server.request("DELETE", "/")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"


def test_unknown_path_is_404(glibc_server: Server) -> None:
    reply = glibc_server.get("/nope")
    assert reply.status == 404 and reply.json()["status"] == 404
