"""The fleet audit's judgement on given processes (pure logic; the real run is in
tests/integration/test_fleet.py): growth and fragmentation thresholds, --fail-on."""

from __future__ import annotations

import pytest

from allocscope.errors import UsageError
from allocscope.fleet import render
from allocscope.fleet.audit import FINDINGS, Audit, Expectations, Process, Workload, judge
from allocscope.fleet.audit import parse_fail_on as fail_on

MiB = 2**20


def proc(pid: str, **facts: object) -> Process:
    p = Process("node-a", pid, "python", "shop", f"checkout-7d9fb8c5d4-{pid}", "app", "checkout")
    for key, value in facts.items():
        setattr(p, key, value)
    return p


def kinds(w: Workload, expect: Expectations) -> list[str]:
    return [f.kind for f in judge(w, expect)]


def test_growth_is_a_share_of_where_the_workload_started() -> None:
    w = Workload("kubernetes", "shop", "checkout", [
        proc("a1b2c", rss_bytes=600 * MiB, growth_bytes=100 * MiB),  # from 500: +20%
        proc("d4f5g", rss_bytes=500 * MiB, growth_bytes=0.0),
    ])  # fmt: skip
    assert kinds(w, Expectations(growth_ratio=0.2)) == []  # 100 of 1000: 10%
    assert kinds(w, Expectations(growth_ratio=0.05)) == ["growth"]
    (finding,) = judge(w, Expectations(growth_ratio=0.05, window="6h"))
    assert finding.pids == ("node-a/a1b2c",)  # only the process that grew
    assert "+100 MiB (+10%) over 6h" in finding.says  # of the 1000 MiB it started from


def test_fragmentation_needs_glibc_a_high_estimate_and_a_large_heap() -> None:
    big = dict(allocator="glibc", fragmentation=0.8, heap_resident_bytes=512 * MiB)
    assert kinds(Workload("kubernetes", "shop", "checkout", [proc("b", **big)]),
                 Expectations()) == ["fragmentation"]  # fmt: skip
    small = {**big, "heap_resident_bytes": 8 * MiB}
    low = {**big, "fragmentation": 0.3}
    jemalloc = {**big, "allocator": "jemalloc"}
    for facts in (small, low, jemalloc):
        assert (
            kinds(Workload("kubernetes", "shop", "x", [proc("b", **facts)]), Expectations()) == []
        )


def test_expectations_decide_the_allocator_and_fips_findings() -> None:
    w = Workload("kubernetes", "shop", "checkout", [proc("b", allocator="glibc", libcrypto=True)])
    assert kinds(w, Expectations()) == []
    assert kinds(w, Expectations(allocator="jemalloc", fips=True)) == ["allocator", "fips"]
    assert kinds(w, Expectations(allocator="glibc")) == []


def test_counts_say_pods_in_kubernetes_and_processes_on_a_host() -> None:
    pods = Workload("kubernetes", "shop", "checkout",
                    [proc("b", allocator="glibc"), proc("c", allocator="glibc")])  # fmt: skip
    assert (
        judge(pods, Expectations(allocator="jemalloc"))[0].says == "2 pods run glibc, not jemalloc"
    )
    host = Process("node-a", "1", "ruby", "", "", "", "", allocator="glibc")
    hosts = Workload("host", "node-a", "ruby", [host])
    (finding,) = judge(hosts, Expectations(allocator="jemalloc"))
    assert finding.says == "1 process runs glibc, not jemalloc"


def test_fail_on_takes_any_or_known_kinds() -> None:
    assert fail_on("any") == frozenset(FINDINGS)
    assert fail_on("fips, two-allocators") == {"fips", "two-allocators"}
    for bad in ("", "fips,nope", ","):
        with pytest.raises(UsageError, match="--fail-on"):
            fail_on(bad)


def test_csv_marks_each_process_with_its_own_findings() -> None:
    off = proc("b", allocator="glibc")
    on = proc("c", allocator="jemalloc", background_threads=1)
    w = Workload("kubernetes", "shop", "checkout", [off, on])
    w.findings = judge(w, Expectations(allocator="jemalloc"))
    audit = Audit("http://p", None, Expectations(allocator="jemalloc"), ("node-a",), (w,))
    rows = render.as_csv(audit).splitlines()
    assert rows[1].endswith(",allocator") and rows[2].endswith(",")
    assert "1 of 1 jemalloc processes run it" in render.text(audit)
