"""bench_alloc.py's knobs (the Ruby demo's environment variables)."""

from __future__ import annotations

import pytest

from allocscope.bench import demo, workloads


def test_defaults_are_the_fragmentation_workload() -> None:
    name, params, sleep = demo.settings({})
    assert name == "fragment" and params == workloads.defaults("fragment")
    assert sleep == demo.DEFAULT_SETTLE


def test_knobs_map_onto_the_parameters() -> None:
    env = {
        "BENCH_WORKLOAD": "seed",
        "BENCH_THREADS": "8",
        "BENCH_ITERS": "200_000",  # Ruby's Integer() accepts underscores; so do we
        "BENCH_STR": "512",
        "BENCH_KEEP": "17",
        "BENCH_ROUNDS": "1",
        "BENCH_SLEEP_AFTER": "0.25",
    }
    name, params, sleep = demo.settings(env)
    assert name == "seed" and sleep == 0.25
    assert (params.threads, params.iters, params.size, params.keep, params.rounds) == (
        8, 200_000, 512, 17, 1
    )  # fmt: skip


def test_keep_as_a_fraction() -> None:
    assert demo.settings({"BENCH_KEEP": "0.05"})[1].keep == 20


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BENCH_WORKLOAD": "http"}, "choose from fragment, json, seed"),
        ({"BENCH_THREADS": "0"}, "must be 1 or more"),
        ({"BENCH_ITERS": "many"}, "expected a whole number"),
        ({"BENCH_KEEP": "1.5"}, "expected N >= 1 or a fraction"),
        ({"BENCH_KEEP": "x"}, "expected N"),
        ({"BENCH_SLEEP_AFTER": "-1"}, "expected 0 to 3600 seconds"),
        ({"BENCH_SLEEP_AFTER": "soon"}, "expected seconds"),
    ],
)
def test_bad_knobs(env: dict[str, str], message: str) -> None:
    with pytest.raises(demo.KnobError, match=message):
        demo.settings(env)
