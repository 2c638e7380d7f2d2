"""The typed run record: round trips, a checked version, impossible values refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from allocscope.bench.record import (
    RECORD_VERSION,
    Check,
    Mark,
    MarkInfo,
    Noise,
    Proof,
    RecordError,
    RunRecord,
)

MB = 2**20


def record(**over: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "variant": "jemalloc-tuned",
        "workload": "fragment",
        "repeat": 2,
        "ok": True,
        "failures": [],
        "metrics": {"rss_peak": 200.0 * MB, "cpu_s": 0.5},
        "marks": [Mark("work_end", 0.8, 150 * MB, 152 * MB, MarkInfo(work_s=0.6, cpu_s=0.5))],
        "timeline": [(0.1, 20 * MB), (0.5, 160 * MB)],
        "proof": Proof(
            "jemalloc",
            "5.3.0",
            path="/usr/lib/libjemalloc.so.2",
            checks=(Check("allocator", True, "jemalloc 5.3.0 serves malloc"),),
            ok=True,
            server=Proof("jemalloc", "5.3.0", ok=True, worker_pid=42),
        ),
        "heap": {"allocated": 1},
        "exit_code": 0,
        "stderr": "",
        "duration_s": 3.0,
        "params": {"threads": 4},
        "order": 3,
        "noise": Noise(load1=1.5, steal=0.01, other_cpu=0.3, busy=("cc1 (0.9 CPU)",)),
    }
    return RunRecord(**{**fields, **over})


def test_round_trip_through_json_keeps_every_field_and_type() -> None:
    r = record()
    back = RunRecord.from_json(r.to_json())
    assert back == r
    assert isinstance(back.proof, Proof) and isinstance(back.proof.checks[0], Check)
    assert back.proof.server is not None and back.proof.server.worker_pid == 42
    assert back.noise == r.noise and back.timeline == r.timeline


def test_the_record_version_is_checked() -> None:
    doc = json.loads(record().to_json())
    for bad in ({**doc, "version": RECORD_VERSION + 1}, {**doc, "schema": "x"}):
        with pytest.raises(RecordError, match=r"this allocscope reads 'allocscope\.run'"):
            RunRecord.from_json(json.dumps(bad))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metrics": {"rss_peak": -1}}, "metrics.rss_peak: impossible value -1"),
        ({"metrics": {"cpu_s": "fast"}}, "metrics.cpu_s: expected a number"),
        ({"metrics": {"cpu_s": float("nan")}}, "impossible value nan"),
        ({"metrics": {"cpu_s": True}}, "expected a number"),
        ({"timeline": [[0.1, -5]]}, "timeline: impossible"),
        ({"timeline": [[0.1]]}, "timeline: expected"),
        ({"repeat": "1"}, "repeat: expected a whole number"),
        ({"ok": "yes"}, "ok: expected true or false"),
        ({"proof": {"allocator": 3}}, "proof.allocator: expected text"),
        ({"proof": {"allocator": "glibc", "checks": [{"name": "x"}]}}, "passed: expected"),
        ({"marks": [{"event": "settle", "t": 1, "rss": -1, "hwm": 0}]}, "rss: impossible"),
        ({"marks": [{"event": "work_end", "t": 1, "info": {"work_s": -2}}]}, "work_s"),
        ({"kind": "telepathy"}, "unknown run kind 'telepathy'"),
        ({"noise": {"load1": -1, "steal": 0, "other_cpu": 0}}, "noise.load1: impossible"),
    ],
)
def test_impossible_or_mistyped_values_are_refused(change: dict[str, Any], message: str) -> None:
    doc = {**record().to_dict(), **change}
    with pytest.raises(RecordError, match=message):
        RunRecord.from_dict(doc)


def test_constructing_a_record_with_an_impossible_metric_fails_at_once() -> None:
    with pytest.raises(RecordError, match="impossible value"):
        record(metrics={"rss_peak": float("inf")})


def test_a_proof_is_judged_against_the_variant() -> None:
    good = Proof("jemalloc", "5.3.0", ok=True)
    assert good.problems("jemalloc") == []
    assert good.problems("glibc") == ["expected glibc, the child runs on jemalloc"]
    failed = Proof("jemalloc", checks=(Check("malloc_conf", False, "narenas: not in effect"),))
    assert failed.problems("jemalloc") == ["malloc_conf: narenas: not in effect"]
    lying = Proof("jemalloc", ok=False)
    assert lying.problems("jemalloc") == ["the proof says it failed"]
    server = good.with_server(Proof("mimalloc", checks=(Check("server allocator", False, "x"),)))
    assert not server.ok and "server allocator: x" in server.problems("jemalloc")
