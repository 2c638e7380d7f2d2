"""report judges what it reads: proofs re-checked, impossible values refused, runs that
must not be pooled refused (different parameters, the same file or run twice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from allocscope.bench.results import VERSION, ResultsError, load, parse
from tests.unit.test_bench_results import sample


def doc() -> dict[str, Any]:
    return json.loads(json.dumps(sample().to_dict()))


def write(tmp_path: Path, name: str, d: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return str(path)


def test_a_run_whose_proof_names_another_allocator_does_not_count() -> None:
    d = doc()
    d["runs"][1]["proof"]["allocator"] = "mimalloc"  # glibc run 1 claims ok
    d["runs"][2]["proof"] = None  # glibc run 2 has no proof at all
    d["runs"][3]["proof"]["ok"] = False  # glibc run 3: the proof itself says it failed
    r = parse(json.dumps(d))
    glibc = [x for x in r.runs if x.variant == "glibc" and x.repeat > 0]
    assert [x.counts for x in glibc] == [False, False, False]
    assert (
        glibc[0].failures[-1] == "rejected on reading: expected glibc, the child runs on mimalloc"
    )
    assert glibc[1].failures[-1] == "rejected on reading: no proof of its allocator"
    assert glibc[2].failures[-1] == "rejected on reading: the proof says it failed"
    assert r.summary("fragment", "glibc", "rss_retained") is None


def test_a_run_of_a_variant_the_file_does_not_describe_does_not_count() -> None:
    d = doc()
    d["runs"][4]["variant"] = "ghost"
    r = parse(json.dumps(d))
    assert not r.runs[4].counts
    assert "variant ghost is not described in the file" in r.runs[4].failures[-1]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("runs", 1, "metrics", "rss_retained"), -5, "metrics.rss_retained: impossible value -5"),
        (("runs", 1, "metrics", "work_s"), "fast", "metrics.work_s: expected a number"),
        (("runs", 1, "repeat"), 1.5, "repeat: expected a whole number"),
        (("runs", 1, "timeline"), [[0.1, -3]], "impossible RSS -3"),
        (("config", "settle_s"), ["x"], "config.settle_s: expected a number"),
        (("host", "loadavg_before"), [-1], "host.loadavg_before: impossible value -1"),
        (("session", "interrupted"), "SIGNOPE", "is not a signal"),
        (("variants", 0, "available"), "yes", "available: expected true or false"),
    ],
)
def test_impossible_or_mistyped_values_are_refused(
    path: tuple[Any, ...], value: Any, message: str
) -> None:
    d = doc()
    holder: Any = d
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    with pytest.raises(ResultsError, match=f"malformed version-{VERSION} results: ") as e:
        parse(json.dumps(d))
    assert message in str(e.value)


def test_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", doc())
    with pytest.raises(ResultsError, match=r"a\.json: given twice \(as .*a\.json\)"):
        load([a, a])
    b = write(tmp_path, "b.json", doc())  # a copy under another name
    with pytest.raises(ResultsError, match=r"the same run appears twice .*a file given twice"):
        load([a, b])


def test_different_workload_parameters_are_not_pooled(tmp_path: Path) -> None:
    four = doc()
    two = doc()
    for run in two["runs"]:
        run["params"] = {"threads": 2}
        run["metrics"] = {k: v * 1.01 for k, v in run["metrics"].items()}
    a, b = write(tmp_path, "a.json", four), write(tmp_path, "b.json", two)
    with pytest.raises(ResultsError) as e:
        load([a, b])
    assert str(e.value) == (
        "workload fragment was run with different parameters (threads 4; threads 2): their "
        "runs must not be pooled; report each set separately"
    )


def test_two_separate_runs_of_the_same_parameters_pool(tmp_path: Path) -> None:
    other = doc()
    for run in other["runs"]:
        run["metrics"] = {k: v * 1.01 for k, v in run["metrics"].items()}
        run["repeat"] = run["repeat"] + 3 if run["repeat"] else 0
    r = load([write(tmp_path, "a.json", doc()), write(tmp_path, "b.json", other)])
    assert len(r.counted("fragment", "glibc")) == 6
