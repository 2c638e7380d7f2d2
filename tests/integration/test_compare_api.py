"""``allocscope.compare`` from Python: the same plan, loop and proof as the CLI, typed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import allocscope
from allocscope import procctl
from allocscope.bench import api, session
from allocscope.bench.plan import PlanError
from allocscope.bench.record import RunRecord
from allocscope.bench.results import load
from allocscope.errors import AllocscopeError

JOB = "import time; x = [str(i) * 500 for i in range(20000)]; time.sleep(1)"


def _order(runs: list[RunRecord]) -> list[tuple[int, str]]:
    return [(r.repeat, r.variant) for r in runs]


def test_a_command_honours_the_seed_and_gets_a_noise_record_per_run(tmp_path: Path) -> None:
    variants, command = ["glibc", "jemalloc"], [sys.executable, "-c", JOB]
    assert not procctl.is_subreaper()
    first = allocscope.compare(
        variants, command=command, repeats=3, seed=11, out=str(tmp_path / "a")
    )
    assert first.session.seed == first.config.seed == 11 and first.seed == 11
    # the runs adopted their orphans; the caller is given back as it was (no later zombies)
    assert not procctl.is_subreaper()
    planned = session.specs(api.plan(variants, command=command, repeats=3, seed=11))
    assert _order(first.runs) == [(s.repeat, s.variant.name) for s in planned]  # type: ignore[attr-defined]
    assert len(first.runs) == 6 and all(r.kind == "command" for r in first.runs)
    assert sorted(r.order for r in first.runs) == [0, 0, 0, 1, 1, 1]
    for run in first.runs:
        assert run.counts, run.failures
        assert run.noise is not None and run.noise.load1 >= 0
        assert run.proof is not None and run.proof.tree and run.proof.ok
        assert run.proof.problems(run.variant) == []  # the judge that reads files agrees
        assert run.metrics["rss_peak"] > 20 * 2**20 and run.metrics["cpu_s"] > 0
    written = load(str(tmp_path / "a" / "results.json"))  # and it reads back the same
    assert _order(written.runs) == _order(first.runs) and written.seed == 11
    assert (tmp_path / "a" / "report.md").exists()


def test_a_workload_run_is_typed_and_proved() -> None:
    results = allocscope.compare(
        ["glibc"],
        workloads=["seed"],
        repeats=1,
        warmup=0,
        seed=5,
        settle=[0.1],
        scale=0.02,
    )
    (run,) = results.runs
    assert run.counts and run.kind == "workload" and run.proof is not None
    assert run.proof.allocator == "glibc" and run.noise is not None
    assert {"rss_retained", "rss_peak", "cpu_s", "work_s"} <= set(run.metrics)
    assert results.config.params("seed")["iters"] >= 1 and results.seed == 5


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"workloads": ["seed"], "command": ["true"]}, "give one of"),
        ({"command": ["true"], "params": {"threads": 2}}, "--threads: for the built-in"),
        ({"command": ["no-such-program-here"]}, "command not found: no-such-program-here"),
        ({"repeats": 0}, "--repeats must be a whole number greater than 0, not 0"),
        ({"service": None, "workloads": ["nope"]}, "unknown workload 'nope'"),
    ],
)
def test_bad_input_raises_the_cli_s_error(kw: dict[str, object], message: str) -> None:
    with pytest.raises(AllocscopeError, match=message):
        allocscope.compare(["glibc"], **kw)  # type: ignore[arg-type]


def test_a_service_is_checked_before_anything_runs() -> None:
    with pytest.raises(PlanError, match=r"has no \{port\}"):
        allocscope.Service("gunicorn app:app", duration=1)
    with pytest.raises(PlanError, match="needs --load N"):
        allocscope.Service("srv {port}")


def test_the_seed_decides_the_order_of_every_kind() -> None:
    def order(seed: int, **kw: object) -> list[tuple[int, str]]:
        plan = api.plan(["glibc", "jemalloc", "tcmalloc"], repeats=8, seed=seed, **kw)  # type: ignore[arg-type]
        return [(s.repeat, s.variant.name) for s in session.specs(plan)]  # type: ignore[attr-defined]

    for kind in ({"command": ["true"]}, {"workloads": ["seed"]}):
        assert order(1, **kind) == order(1, **kind)
        assert order(1, **kind) != order(2, **kind)  # 8 repeats of 3! orders: not by chance
