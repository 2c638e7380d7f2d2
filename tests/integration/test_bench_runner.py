"""The runner with real children under the real Debian allocators: proof, phases, failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from allocscope.bench import variants, workloads
from allocscope.bench.kinds.workload import runner
from allocscope.bench.kinds.workload.runner import Runner, RunSpec
from allocscope.bench.record import RunRecord
from allocscope.bench.results import MB
from allocscope.bench.variants import Variant
from tests.conftest import JEMALLOC_VERSION, leftover_children

TINY = workloads.defaults("fragment").scaled(0.05)


def spec(v: Variant, params: workloads.Params = TINY, **kw: object) -> RunSpec:
    fields: dict[str, object] = {"settle": (0.2,), "repeat": 1, "timeout": 60.0}
    fields.update(kw)
    return RunSpec(v, "fragment", params, **fields)  # type: ignore[arg-type]


def run_all(*specs: RunSpec, serial: bool = False) -> list[RunRecord]:
    return Runner(interval=0.02, serial=serial).run(specs)


def gone(pid: int) -> bool:
    """No such process, not even a zombie (psutil counts zombies as existing)."""
    return not psutil.pid_exists(pid)


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Every test here, passing or failing, leaves no child (or zombie) of ours behind."""
    yield
    assert leftover_children() == []


def test_every_default_variant_proves_its_allocator() -> None:
    chosen = [v for v in variants.select() if v.available]
    assert len(chosen) == 6, "the Debian allocators are installed by scripts/install-system-deps.sh"
    runs = run_all(*(spec(v) for v in chosen))
    assert [r.variant for r in runs] == [v.name for v in chosen]
    for v, r in zip(chosen, runs, strict=True):
        assert r.ok, (v.name, r.failures, r.stderr)
        proof = r.proof
        assert proof is not None and proof.allocator == v.allocator and proof.ok, proof
        assert all(c.passed for c in proof.checks)
        if v.allocator == "jemalloc":
            conf = proof.malloc_conf
            assert conf and all(k["in_effect"] for k in conf)
            assert proof.version == JEMALLOC_VERSION and proof.source == "LD_PRELOAD"
        assert [m.event for m in r.marks] == [
            "ready", "work_start", "work_end", "freed", "settle", "purged"
        ]  # fmt: skip
        m = r.metrics
        assert m["rss_peak"] >= m["rss_work_end"] > m["rss_before"] > 5 * MB
        assert m["work_s"] > 0 and m["cpu_s"] > 0
        assert len(r.timeline) >= 3 and r.exit_code == 0


def test_tuned_jemalloc_gives_back_what_glibc_keeps_on_fragment() -> None:
    params = workloads.defaults("fragment").scaled(0.5)
    glibc, tuned = variants.select(["glibc", "jemalloc-tuned"])
    g, t = run_all(spec(glibc, params, settle=(1.0,)), spec(tuned, params, settle=(1.0,)))
    assert g.ok and t.ok
    kept_g = g.metrics["rss_retained"] - g.metrics["rss_before"]
    kept_t = t.metrics["rss_retained"] - t.metrics["rss_before"]
    assert kept_g > 50 * MB, "glibc keeps what the fragmented heap cannot trim"
    assert kept_t < kept_g / 4, (kept_t / MB, kept_g / MB)


def test_the_parents_ld_preload_never_reaches_a_glibc_child(
    monkeypatch: pytest.MonkeyPatch, jemalloc: str
) -> None:
    monkeypatch.setenv("LD_PRELOAD", jemalloc)
    monkeypatch.setenv("MALLOC_CONF", "narenas:1")
    (r,) = run_all(spec(variants.builtin("glibc")))
    assert r.ok and r.proof is not None and r.proof.allocator == "glibc"
    assert r.proof.declared["ld_preload"] is None


def test_a_refused_preload_fails_that_run_only(tmp_path: Path) -> None:
    fake = tmp_path / "libjemalloc.so.2"
    fake.write_text("not a library\n")
    bad = Variant("broken", "jemalloc", library=str(fake))
    good = variants.builtin("glibc")
    runs = run_all(spec(bad), spec(good), spec(bad, repeat=2))
    assert [r.ok for r in runs] == [False, True, False]
    failures = " | ".join(runs[0].failures)
    assert f"the loader refused to preload {fake}" in failures
    assert "expected jemalloc, but glibc" in failures
    assert runs[0].metrics == {}  # a failed run never counts
    assert [m.event for m in runs[0].marks] == ["ready"]  # stopped before any work


def test_invalid_malloc_conf_fails_the_run(jemalloc: str) -> None:
    v = Variant("je-bad", "jemalloc", jemalloc, (("MALLOC_CONF", "bogus_key:1"),))
    (r,) = run_all(spec(v))
    assert not r.ok
    assert any(
        "jemalloc rejected MALLOC_CONF: <jemalloc>: Invalid conf pair" in f for f in r.failures
    )


def test_malloc_conf_that_no_allocator_reads_fails_the_run() -> None:
    v = Variant("glibc-conf", "glibc", None, (("MALLOC_CONF", "narenas:2"),))
    (r,) = run_all(spec(v))
    assert not r.ok
    assert any("MALLOC_CONF is set but glibc serves malloc" in f for f in r.failures)


def test_an_arena_limit_glibc_cannot_read_fails_the_run() -> None:
    """Issue 9 item 6: MALLOC_ARENA_MAX=abc used to count as proved (with 5 arenas)."""
    v = Variant("glibc-arena-abc", "glibc", None, (("MALLOC_ARENA_MAX", "abc"),))
    (r,) = run_all(spec(v))
    assert not r.ok
    assert any(f.startswith("arena_limit: MALLOC_ARENA_MAX=abc: unproved") for f in r.failures)


def test_an_arena_limit_is_proved_by_the_arenas_glibc_made() -> None:
    (r,) = run_all(spec(variants.builtin("glibc-arena2")))
    assert r.ok, r.failures
    assert r.proof is not None
    [arena] = [c for c in r.proof.checks if c.name == "arena_limit"]
    assert arena.passed
    assert arena.detail == (
        "MALLOC_ARENA_MAX=2: proved: 2 arenas after 4 threads each held an allocation"
    )


def test_wrong_allocator_claim_fails_the_run(mimalloc: str) -> None:
    v = Variant("liar", "jemalloc", mimalloc)
    (r,) = run_all(spec(v))
    assert not r.ok and r.proof is not None and r.proof.allocator == "mimalloc"
    assert any("expected jemalloc, but mimalloc" in f for f in r.failures)


def test_timeout_kills_the_whole_group_and_leaves_no_zombie() -> None:
    slow = workloads.defaults("seed").replace(iters=10**9, rounds=1, threads=1)
    s = RunSpec(
        variants.builtin("glibc"), "seed", slow, (), 1, timeout=6.0
    )  # busy CI: 2 s was tight
    (r,) = Runner(interval=0.05).run([s])
    assert not r.ok and r.failures == ["timed out after 6 s: killed"]
    pid = r.marks[0].info.pid
    assert pid is not None
    assert gone(pid)
    assert r.exit_code == -9


def _overlaps(serial: bool) -> list[str]:
    """The runner's start/done events: 'start start' means two children were alive."""
    glibc = variants.builtin("glibc")
    heard: list[str] = []
    runner_ = Runner(interval=0.02, serial=serial, progress=lambda kind, s, r: heard.append(kind))
    runs = runner_.run([spec(glibc, settle=(1.0,)), spec(glibc, repeat=2, settle=(1.0,))])
    assert all(r.ok for r in runs) and heard.count("done") == 2
    return heard


def test_serial_mode_runs_one_child_at_a_time() -> None:
    assert _overlaps(serial=True) == ["start", "done", "start", "done"]
    # by default the next child starts while the first settles: the check can tell
    assert _overlaps(serial=False) == ["start", "start", "done", "done"]


def test_plan_interleaves_variants_and_puts_warmups_first() -> None:
    vs = variants.select(["glibc", "jemalloc-tuned"])
    specs = runner.plan(vs, [("seed", TINY)], repeats=2, warmup=1, settle=(0.5,), timeout=10)
    assert [s.repeat for s in specs] == [0, 0, 1, 1, 2, 2]  # each repeat: every variant
    for r in (0, 1, 2):  # once, in a shuffled order (see test_bench_stats)
        names = sorted(s.variant.name for s in specs if s.repeat == r)
        assert names == ["glibc", "jemalloc-tuned"]
    assert specs[0].settle == () and not specs[0].purge  # warm-ups skip the settling


def test_http_workload_measures_the_server_and_stops_it() -> None:
    params = workloads.defaults("http").replace(iters=20, rounds=1, threads=2)
    v = variants.builtin("jemalloc-tuned")
    s = RunSpec(v, "http", params, (0.2,), 1, timeout=90)
    (r,) = Runner(interval=0.05).run([s])
    assert r.ok, (r.failures, r.stderr)
    server = r.proof.server if r.proof else None
    assert (
        server is not None and server.allocator == "jemalloc" and server.version == JEMALLOC_VERSION
    )
    assert {c.name for c in server.checks} >= {"server allocator", "server malloc_conf"}
    measured = r.marks[0].info.measured_pid
    assert measured is not None and measured != r.marks[0].info.pid and gone(measured)
    assert r.metrics["rss_work_end"] > 20 * MB and "client_cpu_s" in r.metrics
    assert "purged" not in [m.event for m in r.marks]  # the server is another process


def test_a_server_that_refuses_to_start_fails_the_run(mimalloc: str) -> None:
    """The launcher's fail-closed check (exit 114) stops the http workload before work."""
    params = workloads.defaults("http").replace(iters=5, rounds=1, threads=1)
    liar = Variant("liar", "jemalloc", mimalloc)
    (r,) = Runner(interval=0.05).run([RunSpec(liar, "http", params, (), 1, timeout=60)])
    assert not r.ok and r.proof is None
    assert any(
        f.startswith("the workload failed: RuntimeError: the service exited with status 114")
        for f in r.failures
    ), r.failures
    assert "Traceback" in r.stderr  # the child's own account is kept with the run
