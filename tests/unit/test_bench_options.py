"""Command-line flags become one plan; invalid values become clear errors."""

from __future__ import annotations

import argparse

import pytest

from allocscope.bench import workloads
from allocscope.bench.plan import Plan, parse_settle
from allocscope.bench.workloads import Params, WorkloadError
from allocscope.commands import flags
from allocscope.errors import AllocscopeError


def plan_of(*argv: str) -> Plan:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, default_workloads=workloads.DEFAULT_SET)
    args = parser.parse_args(list(argv))
    return flags.plan_from(args, default_workloads=workloads.DEFAULT_SET)


def test_defaults() -> None:
    p = plan_of()
    assert [n for n, _ in p.workloads] == ["fragment", "json", "seed"]
    assert (p.repeats, p.warmup, p.settle, p.serial, p.purge) == (5, 1, (0.5, 2.0), False, True)
    assert len(p.variants) == 6
    assert p.config().params("fragment") == workloads.defaults("fragment").to_dict()


def test_scale_and_overrides() -> None:
    p = plan_of("-w", "seed", "--scale", "0.5", "--threads", "2", "--rounds", "1")
    ((name, params),) = p.workloads
    base = workloads.defaults("seed")
    assert name == "seed" and params.iters == base.iters // 2
    assert (params.threads, params.rounds, params.size) == (2, 1, base.size)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scale", "0"], "--scale must be a number greater than 0, not 0"),
        (["--scale", "-1"], "--scale must be a number greater than 0, not -1"),
        (["--scale", "nan"], "--scale must be a number greater than 0"),
        (["--repeats", "0"], "--repeats must be a whole number greater than 0"),
        (["--warmup", "-1"], "--warmup must be a whole number 0 or more"),
        (["--interval", "0"], "--interval must be"),
        (["--settle", "1,x"], "expected seconds"),
        (["--settle", "-1"], "--settle must be a number 0 or more"),
        (["-w", "nope"], "unknown workload 'nope'; choose from fragment, json, seed, http"),
        (["-w", "seed", "-w", "seed"], "given twice"),
        (["--threads", "0"], "threads must be a positive integer, not 0"),
        (["-V", "nosuch"], "unknown variant 'nosuch'"),
        (["--lib", "jemalloc"], "expected NAME=PATH"),
    ],
)
def test_invalid_input(argv: list[str], message: str) -> None:
    with pytest.raises(AllocscopeError, match=message.replace("(", r"\(")):
        plan_of(*argv)


def test_settle_is_sorted_and_may_be_empty() -> None:
    assert parse_settle("2,0.5") == (0.5, 2.0)
    assert parse_settle("") == ()


def test_params_refuse_nonsense() -> None:
    with pytest.raises(WorkloadError, match="scale must be greater than 0"):
        Params(1, 1, 1, 1, 1).scaled(0)
    with pytest.raises(WorkloadError, match="iters must be a positive integer"):
        Params(1, -5, 1, 1, 1)
    with pytest.raises(WorkloadError, match="unexpected keyword"):
        Params(1, 1, 1, 1, 1).replace(colour=1)
    assert Params(1, 10, 1, 1, 1).scaled(0.01).iters == 1  # never zero work
