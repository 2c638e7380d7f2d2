"""The results document: metrics from marks, summaries, round trips, migration, bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from allocscope.bench import results
from allocscope.bench.results import (
    MB,
    Config,
    Host,
    Mark,
    MarkInfo,
    Proof,
    Results,
    ResultsError,
    RunRecord,
    VariantInfo,
    load,
    metrics_of,
    parse,
    summarize,
)

MARKS = [
    Mark("ready", 0.10, 20 * MB, 20 * MB),
    Mark("work_start", 0.20, 22 * MB, 22 * MB),
    Mark("work_end", 0.80, 150 * MB, 152 * MB, MarkInfo(work_s=0.6, cpu_s=0.55)),
    Mark("freed", 0.81, 140 * MB, 152 * MB, MarkInfo(free_s=0.01)),
    Mark("settle", 1.31, 60 * MB, 152 * MB, MarkInfo(after_s=0.5)),
    Mark("settle", 2.81, 30 * MB, 152 * MB, MarkInfo(after_s=2.0)),
    Mark("purged", 2.82, 29 * MB, 152 * MB, MarkInfo(how="jemalloc")),
]
TIMELINE = [(0.1, 20 * MB), (0.5, 160 * MB), (0.8, 150 * MB), (2.0, 40 * MB)]


def run(variant: str, repeat: int, work_s: float, retained: float, ok: bool = True) -> RunRecord:
    metrics = {"work_s": work_s, "cpu_s": work_s, "rss_retained": retained * MB}
    metrics["rss_peak"] = 150.0 * MB
    return RunRecord(
        variant=variant,
        workload="fragment",
        repeat=repeat,
        ok=ok,
        failures=[] if ok else ["the loader refused to preload /x.so"],
        metrics=metrics if ok else {},
        marks=list(MARKS),
        timeline=list(TIMELINE),
        proof=Proof(variant.split("-")[0], "1.0", ok=ok),
        heap=None,
        exit_code=0,
        stderr="",
        duration_s=3.0,
        params={"threads": 4},
    )


def sample() -> Results:
    runs = [
        run("glibc", 0, 9.9, 999),  # warm-up: never counts
        run("glibc", 1, 1.00, 140),
        run("glibc", 2, 1.10, 142),
        run("glibc", 3, 0.90, 141),
        run("jemalloc-tuned", 1, 1.00, 30),
        run("jemalloc-tuned", 2, 1.02, 31),
        run("jemalloc-tuned", 3, 0.0, 0, ok=False),
    ]
    return Results(
        created="2026-01-01T00:00:00Z",
        host=Host(cpu_model="test CPU"),
        config=Config(settle_s=(0.5, 2.0), workloads={"fragment": {"threads": 4}}),
        variants=[
            VariantInfo("glibc", "glibc"),
            VariantInfo("jemalloc-tuned", "jemalloc"),
            VariantInfo(
                "tcmalloc",
                "tcmalloc",
                available=False,
                unavailable="libtcmalloc_minimal.so.4 not found",
            ),
        ],
        runs=runs,
    )


def test_metrics_from_marks() -> None:
    m = metrics_of(MARKS, TIMELINE)
    assert m["rss_before"] == 22 * MB and m["rss_work_end"] == 150 * MB
    assert m["rss_peak"] == 160 * MB  # the sampled timeline saw more than VmHWM at the marks
    assert m["rss_freed"] == 140 * MB
    assert m["rss_settle_0.5"] == 60 * MB and m["rss_settle_2"] == 30 * MB
    assert m["rss_retained"] == 30 * MB and m["rss_purged"] == 29 * MB
    assert (m["work_s"], m["cpu_s"], m["free_s"]) == (0.6, 0.55, 0.01)


def test_server_cpu_read_from_outside_replaces_the_clients() -> None:
    marks = [
        Mark("work_start", 0.2, MB, MB, MarkInfo(server_cpu_s=1.0)),
        Mark("work_end", 2.2, MB, MB, MarkInfo(work_s=2.0, cpu_s=0.7, server_cpu_s=2.5)),
        Mark("freed", 2.3, MB, MB),
    ]
    m = metrics_of(marks, [])
    assert m["cpu_s"] == 1.5 and m["client_cpu_s"] == 0.7


def test_summary_median_and_spread() -> None:
    s = summarize([1.0, 1.1, 0.9])
    assert s is not None and s.median == 1.0 and s.n == 3
    assert s.spread == pytest.approx(0.2)
    assert summarize([]) is None


def test_only_measured_runs_that_proved_themselves_count() -> None:
    r = sample()
    work = r.summary("fragment", "glibc", "work_s")
    assert work is not None and work.n == 3 and work.median == 1.0  # not the 9.9 warm-up
    tuned = r.summary("fragment", "jemalloc-tuned", "rss_retained")
    assert tuned is not None and tuned.n == 2  # the failed run does not count
    assert r.baseline() == "glibc"
    assert [v.name for v in r.unavailable()] == ["tcmalloc"]
    assert len(r.failed()) == 1


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    results.save(sample(), str(path))
    doc = json.loads(path.read_text())
    assert (doc["schema"], doc["version"]) == ("allocscope.results", results.VERSION)
    back = load(str(path))
    assert back.to_dict() == sample().to_dict()
    assert back.migrated_from is None
    assert back.runs[1].marks[2].info == MarkInfo(work_s=0.6, cpu_s=0.55)
    assert doc["runs"][1]["marks"][2]["info"] == {"work_s": 0.6, "cpu_s": 0.55}


# The Ruby seed's output, as the demo wrote glibc.json (version 0: no schema key).
V0_RUBY = {
    "ruby_version": "3.3.0",
    "threads": 4,
    "iters_per_thread": 200000,
    "str_size": 1024,
    "keep_ratio": 17,
    "rounds": 3,
    "time_s": 1.234,
    "rss_before_mb": 20.5,
    "rss_after_mb": 350.25,
    "rss_delta_mb": 329.75,
    "ld_preload": None,
    "malloc_conf": None,
}
# bench_alloc.py's output under jemalloc (also version 0, with the detected allocator).
V0_PY = {
    **V0_RUBY,
    "workload": "fragment",
    "rss_after_mb": 30.0,
    "rss_peak_mb": 231.0,
    "ld_preload": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "allocator": {"name": "jemalloc", "version": "5.3.0"},
}
# A version-1 document as this version writes it, trimmed to one run.
V1: dict[str, Any] = {
    "schema": "allocscope.results",
    "version": 1,
    "created": "2026-01-01T00:00:00Z",
    "allocscope_version": "0.1.0",
    "host": {"kernel": "6.1"},
    "config": {"settle_s": [2.0]},
    "variants": [{"name": "glibc", "allocator": "glibc", "available": True}],
    "runs": [
        {
            "variant": "glibc", "workload": "seed", "repeat": 1, "ok": True, "failures": [],
            "metrics": {"work_s": 0.5, "rss_retained": 25 * MB},
            "marks": [{"event": "work_start", "t": 0.2, "rss": MB, "hwm": MB, "info": {}}],
            "timeline": [[0.2, MB], [0.3, 2 * MB]],
            "proof": {"allocator": "glibc", "version": "2.36"}, "heap": None,
            "exit_code": 0, "stderr": "", "duration_s": 1.0, "params": {"threads": 4},
        }
    ],
}  # fmt: skip


def test_version_0_demo_output_migrates(tmp_path: Path) -> None:
    glibc, jema = tmp_path / "glibc.json", tmp_path / "jema.json"
    glibc.write_text(json.dumps(V0_RUBY, indent=2))
    jema.write_text(json.dumps(V0_PY, indent=2))
    r = load([str(glibc), str(jema)])
    assert r.migrated_from == 0
    assert r.variant_names() == ["glibc", "jemalloc"] and r.baseline() == "glibc"
    g, j = r.runs
    assert g.workload == "seed" and j.workload == "fragment"
    assert g.metrics == {"rss_before": 20.5 * MB, "rss_retained": 350.25 * MB, "work_s": 1.234}
    assert j.metrics["rss_peak"] == 231.0 * MB and j.detected == "jemalloc 5.3.0"
    assert all(run.counts for run in r.runs)


def test_version_0_as_jq_slurped_list_and_as_concatenated_objects() -> None:
    listed = parse(json.dumps([V0_RUBY, V0_PY]))
    joined = parse(json.dumps(V0_RUBY) + "\n" + json.dumps(V0_PY) + "\n")
    assert [r.variant for r in listed.runs] == [r.variant for r in joined.runs]
    assert len(listed.runs) == 2


def test_version_1_migrates_unchanged() -> None:
    r = parse(json.dumps(V1))
    assert r.migrated_from == 1 and r.host == Host(kernel="6.1")
    assert r.runs[0].counts and r.runs[0].proof is not None
    assert r.runs[0].kind == "workload" and r.runs[0].noise is None
    assert r.runs[0].timeline == [(0.2, MB), (0.3, 2 * MB)]
    assert r.runs[0].marks[0].event == "work_start"
    assert r.to_dict()["runs"][0]["metrics"] == V1["runs"][0]["metrics"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            json.dumps({**V1, "version": 99}),
            f"unknown schema version 99.*reads versions 0 to {results.VERSION}",
        ),
        (json.dumps({**V1, "version": "one"}), "schema version 'one' is not a positive integer"),
        (json.dumps({**V1, "schema": "someone.else"}), "schema 'someone.else' is not"),
        (json.dumps(V1)[:200], "truncated JSON"),
        ("{]", "not valid JSON"),
        ("", "truncated JSON"),
        (json.dumps({"hello": "world"}), "not an allocscope results file"),
        (json.dumps([1, 2]), "not an allocscope results file"),
        (json.dumps({**V1, "runs": [{"variant": "x"}]}), "malformed version-1 results"),
    ],
)
def test_unreadable_results_say_why(text: str, message: str) -> None:
    with pytest.raises(ResultsError, match=message):
        parse(text, "r.json")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="No such file"):
        load(str(tmp_path / "nope.json"))


def test_host_metadata_has_what_the_issue_asks_for() -> None:
    h = results.host()
    for key in ("cpu_model", "kernel", "thp_enabled", "python", "cpus"):
        assert getattr(h, key), key
    assert h.thp_enabled in ("always", "madvise", "never")
