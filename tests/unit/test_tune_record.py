"""A tune's search as the results document records it (session.tune): typed on reading,
written back as it was, a wrong type or an impossible value refused. The stored file is a
real tune (fragment, two jemalloc candidates) written by the code before these records."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from allocscope.bench.checked import RecordError
from allocscope.bench.results import ResultsError, load, parse, save
from allocscope.bench.results.search import (
    Decided,
    Fate,
    Ratio,
    Recommended,
    RunnerUp,
    Search,
    Sizing,
    TuneConfig,
)
from allocscope.report import table

STORED = Path(__file__).parent / "data" / "results-v3-tune.json"

RATIO = Ratio("retained", 0.0731, 0.07, 0.08, "significant", 7, 7)


def test_a_stored_tune_reads_as_typed_records() -> None:
    results = load(str(STORED))
    search = results.session.tune
    assert search is not None and isinstance(results.config.tune, TuneConfig)
    assert search.objective == results.config.tune.objective == "retained"
    assert search.schedule == Sizing(first=2, sizes=(2, 1, 1), runs=16, per_run_s=0.5)
    assert [r.number for r in search.rounds] == [1, 2, 3]
    assert set(search.rounds[0].candidates) == set(search.specs)  # the seeded order
    # every candidate's fate; the one that left says in which round and why
    assert {c.variant for c in search.candidates} == set(search.specs)
    gone = [c for c in search.candidates if c.dropped]
    assert gone and all(c.round_left for c in gone)
    assert search.decision is not None and search.decision.recommendation is not None
    rec = search.decision.recommendation
    assert rec.gains["retained"].verdict == "significant" and rec.gains["retained"].high < 1
    assert rec.env["MALLOC_CONF"] == "dirty_decay_ms:100,background_thread:true"
    assert search.fate(rec.name) is not None and search.fate("nope") is None


def test_a_stored_tune_is_written_back_as_it_was(tmp_path: Path) -> None:
    again = tmp_path / "again.json"
    save(load(str(STORED)), str(again))
    assert json.loads(again.read_text()) == json.loads(STORED.read_text())


def test_a_runner_up_and_a_recommendation_round_trip() -> None:
    up = RunnerUp("b", "rss_retained", 1.2, 1.1, 1.3, "within noise", 7, 7, 2.5, 1.0, 30.0)
    rec = Recommended("a", "jemalloc", {"dirty_decay_ms": 100}, {"MALLOC_CONF": "x"}, None,
                      "a-spec", {"retained": RATIO}, up)  # fmt: skip
    decided = Decided(rec, "a: retained x0.073")
    assert Decided.from_dict(json.loads(json.dumps(decided.to_dict()))) == decided
    assert Decided.from_dict({"recommendation": None, "reason": "none"}).recommendation is None


def _tune(**change: Any) -> dict[str, Any]:
    doc = json.loads(STORED.read_text())["session"]["tune"]
    return {**doc, **change}


@pytest.mark.parametrize(
    ("cls", "doc", "message"),
    [
        (Ratio, {**RATIO.to_dict(), "verdict": "great"}, "ratio.verdict 'great'"),
        (Ratio, {**RATIO.to_dict(), "low": -0.1}, "ratio.low: impossible value -0.1"),
        (Ratio, {**RATIO.to_dict(), "n": "7"}, "ratio.n: expected a whole number"),
        (Fate, {"variant": "a", "spec": None, "runs": -1, "counted": 0}, "candidate.runs: imposs"),
        (Fate, {"variant": "a", "runs": 1, "counted": 1, "ratios": {"p99": 3}}, "ratios.p99: exp"),
        (Search, _tune(bounds="p99<=1.1"), "session.tune.bounds: expected a list"),
        (Search, _tune(budget_s=float("inf")), "session.tune.budget_s: impossible value inf"),
        (Search, _tune(refused={"[jemalloc] x": 3}), "session.tune.refused.[jemalloc] x: exp"),
        (Search, _tune(space={"jemalloc": {"dirty_decay_ms": 100}}), "dirty_decay_ms: expected a"),
        (
            Search,
            _tune(schedule={"first": 2, "sizes": [2, -1], "runs": 3, "per_run_s": 1}),
            "sizes[]",
        ),
        (Search, _tune(rounds=[{"round": 1, "runs_each": 1, "ranking": [{"x": {}}]}]), "variant"),
        (Search, _tune(decision={"recommendation": None}), "session.tune.decision.reason: exp"),
        (TuneConfig, {"objective": "retained", "budget_s": "10m"}, "budget_s: expected a number"),
    ],
)
def test_a_bad_value_is_refused_on_reading(cls: Any, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        cls.from_dict(doc)


def test_a_bad_search_in_a_file_is_a_results_error() -> None:
    doc = json.loads(STORED.read_text())
    doc["session"]["tune"]["candidates"][0]["counted"] = -2
    with pytest.raises(ResultsError, match=r"candidates\[\]\.counted: impossible value -2"):
        parse(json.dumps(doc))


def test_the_report_of_a_tune_says_its_decision(tmp_path: Path) -> None:
    words = table.markdown(load(str(STORED)))
    assert (
        "allocscope tune (2 candidates, objective retained) recommends "
        "jemalloc.dirty-100.bg-true: retained x0.443" in words
    )
    doc = json.loads(STORED.read_text())
    doc["session"]["tune"]["decision"] = None  # written mid-search
    unfinished = tmp_path / "results.json"
    unfinished.write_text(json.dumps(doc))
    assert "the search did not finish; no decision" in table.markdown(load(str(unfinished)))
