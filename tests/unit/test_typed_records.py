"""The typed records of a results file: each round-trips through its JSON, a wrong type or
an impossible value is refused on reading, and stored files of older versions still load
and render the same tables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from allocscope.bench.checked import RecordError
from allocscope.bench.evidence import (
    Escaped,
    Evidence,
    ExitHeap,
    Fit,
    Growth,
    LoadSummary,
    Stop,
    Trims,
)
from allocscope.bench.record import Mark, MarkInfo, Noise
from allocscope.bench.results import VERSION, ResultsError, load, parse, save
from allocscope.bench.results.header import (
    AutoRepeats,
    Config,
    DefaultRepeats,
    Host,
    Library,
    Session,
    VariantInfo,
)
from allocscope.report import table

DATA = Path(__file__).parent / "data"

FIT = Fit(slope=-0.25, stderr=0.01, points=40, verdict="shrinking")
LOAD = LoadSummary(
    requests=300, ok=300, errors={"reset": 2}, error_count=2, duration_s=1.5, rps=200.0,
    p50_ms=1.2, p90_ms=2.0, p99_ms=9.5, max_ms=12.0,
)  # fmt: skip
EVIDENCE = Evidence(
    tree={"root": 10, "peak_rss": 2**20, "processes": [{"pid": 10, "ppid": 1}]},
    processes=({"pid": 10, "allocator": "jemalloc"},),
    inside=({"pid": 10, "pymalloc_blocks": 0},),
    exit_heaps=(ExitHeap(pid=10, rss=2**20, heap={"allocated": 1}),),
    stdout="done\n",
    trims=Trims(count=1, returned_bytes=4096, events=({"event": "trim", "returned": 4096},)),
    warnings=("the server ignored SIGTERM for 1 s: killed",),
    escaped=(Escaped(pid=11, command="sleep 9", how="SIGTERM"),),
    port=8080,
    argv=("srv", "8080"),
    load=LOAD,
    growth=Growth(per_10k_requests=FIT, per_hour=None),
    stop=Stop(how="SIGKILL", took_s=1.0),
)
HOST = Host(
    hostname="h", cpus=2, cpus_usable=2, kernel="6.1", thp_enabled="madvise",
    libraries={"/lib/libjemalloc.so.2": Library("jemalloc", "5.3.0", "/lib/libjemalloc.so.2")},
    loadavg_before=(0.5, 0.4, 0.3), loadavg_after=(0.7, 0.5, 0.3),
)  # fmt: skip
CONFIG = Config(
    kind="workload", repeats=5, warmup=1, settle_s=(0.5, 2.0), interval_s=0.05, timeout_s=120.0,
    serial=False, purge=True, seed=7, repeats_auto=AutoRepeats(0.05, 600.0, 20),
    repeats_default=DefaultRepeats(5, 60.0, 600.0), workloads={"seed": {"threads": 4}},
)  # fmt: skip
SESSION = Session(
    seed=7, duration_s=12.5, noise=Noise(load1=0.5, steal=0.0, other_cpu=0.1, busy=("pip",)),
    busy_runs=0, measured_runs=10, repeats_auto={"seed": "narrow enough"},
    repeats_stopped=None, interrupted="SIGINT",
)  # fmt: skip
VARIANT = VariantInfo(
    "jemalloc-tuned", "jemalloc", "/lib/libjemalloc.so.2", {"MALLOC_CONF": "dirty_decay_ms:100"},
    "tuned", trim_every=2.0,
)  # fmt: skip

RECORDS: list[Any] = [
    FIT, Growth(per_hour=FIT), LOAD, LoadSummary(command=("wrk", "x"), exit_code=0, output="ok"),
    Trims(), Stop("exited", 0.0), EVIDENCE, Evidence(tree={}), HOST, Host(), CONFIG, Config(),
    SESSION, Session(), VARIANT, MarkInfo(work_s=0.5, cpu_s=0.4, server_cpu_s=1.0),
    MarkInfo(pid=3, measured_pid=4, pss=2**20, argv=("a", "b"), how="SIGTERM", took_s=0.1),
]  # fmt: skip


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_each_record_round_trips_through_json(record: Any) -> None:
    doc = json.loads(json.dumps(record.to_dict()))
    assert type(record).from_dict(doc) == record
    assert type(record).from_dict(doc).to_dict() == doc


@pytest.mark.parametrize(
    ("cls", "doc", "message"),
    [
        (Fit, {**FIT.to_dict(), "verdict": "booming"}, "growth verdict 'booming'"),
        (Fit, {**FIT.to_dict(), "stderr": -1}, "stderr: impossible value -1"),
        (Fit, {**FIT.to_dict(), "slope": float("nan")}, "slope: impossible value nan"),
        (Fit, {**FIT.to_dict(), "points": 2.5}, "points: expected a whole number"),
        (LoadSummary, {"requests": -3}, "load.requests: impossible value -3"),
        (LoadSummary, {"errors": {"reset": "two"}}, "load.errors.reset: expected a whole"),
        (LoadSummary, {"p99_ms": "slow"}, "load.p99_ms: expected a number"),
        (Trims, {"count": "3"}, "trims.count: expected a whole number"),
        (Trims, {"events": [1]}, "trims.events[]: expected an object"),
        (Stop, {"how": "SIGFOO", "took_s": 1}, "stop.how 'SIGFOO'"),
        (Evidence, {"tree": {}, "warnings": [1]}, "evidence.warnings: expected text"),
        (Evidence, {"tree": [], "stdout": ""}, "evidence.tree: expected an object"),
        (Evidence, {"tree": {}, "growth": {"mib_per_hour": 3}}, "mib_per_hour: expected an obj"),
        (Host, {"cpus": -2}, "host.cpus: impossible value -2"),
        (Host, {"loadavg_before": ["x"]}, "host.loadavg_before: expected a number"),
        (Host, {"kernel": 6}, "host.kernel: expected text"),
        (Config, {"settle_s": [-1]}, "config.settle_s: impossible value -1"),
        (Config, {"repeats_auto": {"target": "5%", "budget_s": 1, "max": 2}}, "target: expected"),
        (Config, {"workloads": {"seed": 4}}, "config.workloads.seed: expected an object"),
        (Session, {"interrupted": "SIGNOPE"}, "is not a signal"),
        (Session, {"repeats_auto": {"seed": 5}}, "session.repeats_auto.seed: expected text"),
        (Session, {"seed": True}, "session.seed: expected a whole number"),
        (VariantInfo, {"name": "x", "available": "yes"}, "available: expected true or false"),
        (VariantInfo, {"allocator": "glibc"}, "a variant without a name"),
    ],
)
def test_a_bad_value_is_refused_on_reading(cls: Any, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        cls.from_dict(doc)


def test_a_load_end_mark_keeps_the_load_flat_in_its_info() -> None:
    mark = Mark("load_end", 3.0, 2**20, 2**21, MarkInfo(pss=2**19, load=LOAD))
    doc = json.loads(json.dumps(mark.to_dict()))
    assert doc["info"]["p99_ms"] == 9.5 and doc["info"]["pss"] == 2**19
    assert Mark.from_dict(doc) == mark
    assert Mark.from_dict({**doc, "event": "stop"}).info.load is None  # only load_end's


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"after_s": -0.5}, "info.after_s: impossible value -0.5"),
        ({"work_s": "fast"}, "info.work_s: expected a number"),
        ({"pid": 1.5}, "info.pid: expected a whole number"),
        ({"argv": "python job.py"}, "info.argv: expected a list"),
    ],
)
def test_a_bad_mark_info_is_refused_on_reading(info: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        Mark.from_dict({"event": "settle", "t": 1.0, "rss": 1, "hwm": 1, "info": info})


def test_a_bad_evidence_value_in_a_file_is_a_results_error() -> None:
    doc = json.loads((DATA / "results-v3-service.json").read_text())
    doc["runs"][1]["evidence"]["growth"]["mib_per_hour"]["stderr"] = -0.5
    with pytest.raises(ResultsError, match=f"malformed version-{VERSION} results: .*stderr"):
        parse(json.dumps(doc))


@pytest.mark.parametrize("kind", ["workload", "command", "service"])
def test_a_version_2_file_renders_the_same_table(kind: str) -> None:
    """The reports of stored version-2 files, as the version-2 reader rendered them: the
    figures are the same; only a service's renamed headings differ (one name per idea)."""
    results = load(str(DATA / f"results-v2-{kind}.json"))
    assert results.migrated_from == 2
    before = (DATA / f"report-v2-{kind}.md").read_text()
    renamed = {
        "| after idle MiB |": "| retained MiB |",
        "_after idle: tree RSS at the last --idle point": "_retained: tree RSS at the last "
        "--settle point",
    }
    for old, new in renamed.items():
        before = before.replace(old, new)
    after = table.markdown(results).replace("\n_read from a version-2 file_", "")
    assert after == before


def test_a_version_2_service_migrates_to_the_one_name_of_each_idea() -> None:
    old = json.loads((DATA / "results-v2-service.json").read_text())
    results = load(str(DATA / "results-v2-service.json"))
    for before, run in zip(old["runs"], results.runs, strict=True):
        assert run.evidence is not None and run.evidence.to_dict() == before["target"]
        assert before["metrics"]["rss_idle"] == run.metrics["rss_retained"]
        assert before["metrics"]["rss_idle_0.6"] == run.metrics["rss_settle_0.6"]
        assert [m.event for m in run.marks] == [
            "settle" if m["event"] == "idle" else m["event"] for m in before["marks"]
        ]
        growth = run.evidence.growth
        assert growth is not None and growth.per_10k_requests is not None
        assert growth.per_10k_requests.slope == before["target"]["growth"][
            "mib_per_10k_requests"]["slope"]  # fmt: skip
    assert not any("idle" in key for run in results.runs for key in run.metrics)


def test_the_version_3_file_reads_back_as_written(tmp_path: Path) -> None:
    v3 = DATA / "results-v3-service.json"
    results = load(str(v3))
    assert results.migrated_from is None and results.config.kind == "service"
    assert results.host.busy_before() == (3.28, 2) and results.session.seed == 7
    save(results, str(tmp_path / "again.json"))
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(v3.read_text())
    v2 = load(str(DATA / "results-v2-service.json"))
    assert table.markdown(results) == table.markdown(v2).replace(
        "\n_read from a version-2 file_", ""
    )
