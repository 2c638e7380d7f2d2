"""The typed records of a results file: each round-trips through its JSON, a wrong type or
an impossible value is refused on reading, and stored files of older versions still load
and render the same tables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from allocscope.bench.checked import RecordError
from allocscope.bench.evidence import (
    MALFORMED,
    Escaped,
    Evidence,
    ExitHeap,
    Fit,
    Growth,
    HookEvents,
    Inside,
    LoadSummary,
    MallocConfKey,
    ProcessPoint,
    ProcessProof,
    ProcessTrace,
    Stop,
    TreePoint,
    TreeTrace,
    TrimEvent,
    Trims,
)
from allocscope.bench.kinds.process import inject
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
from allocscope.bench.variants import builtin, setting_problems
from allocscope.report import table

DATA = Path(__file__).parent / "data"

TRIM = TrimEvent(pid=5, t=1.7e9, rss_before=2**20, rss_after=2**20 - 4096, returned=4096,
                 released=1, took_s=0.0002)  # fmt: skip
FIT = Fit(slope=-0.25, stderr=0.01, points=40, verdict="shrinking")
LOAD = LoadSummary(
    requests=300, ok=300, errors={"reset": 2}, error_count=2, duration_s=1.5, rps=200.0,
    p50_ms=1.2, p90_ms=2.0, p99_ms=9.5, max_ms=12.0,
)  # fmt: skip
TREE = TreeTrace(
    root=10, peak_rss=3 * 2**20, peak_pss=2**20, cpu_s=0.25, stride=2,
    timeline=(TreePoint(0.0, 2**20, 2**19, 1), TreePoint(0.5, 3 * 2**20, 2**20, 2)),
    processes=(
        ProcessTrace(10, 1, "python3", 0.2, 2**21, (ProcessPoint(0.0, 2**20, 2**19),)),
        ProcessTrace(11, 10, "sh -c (x)", 0.05, 2**20, (ProcessPoint(0.5, 2**20, 0),)),
    ),
)  # fmt: skip
PROOF = ProcessProof(10, "/usr/bin/python3", "jemalloc", "5.3.0", "/lib/libjemalloc.so.2")
INSIDE = Inside(
    pid=10, pymalloc_blocks=0, pythonmalloc="malloc", allocator="jemalloc", version="5.3.0",
    path="/lib/libjemalloc.so.2", source="LD_PRELOAD", python_allocator="malloc",
    malloc_conf=(MallocConfKey("dirty_decay_ms", True), MallocConfKey("narenas", False, "r")),
    jemalloc_options={"dirty_decay_ms": 100, "background_thread": True, "thp": "default"},
)  # fmt: skip
EVIDENCE = Evidence(
    tree=TREE,
    processes=(PROOF, ProcessProof(11, None, None, None, None, "cannot inspect: gone")),
    inside=(INSIDE, Inside(pid=11, error="ImportError: no allocscope")),
    exit_heaps=(ExitHeap(pid=10, rss=2**20, heap={"allocated": 1}),),
    stdout="done\n",
    trims=Trims(count=1, returned_bytes=4096, events=(TRIM,)),
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

ROOT = TreeTrace(root=1).to_dict()
TRACE = TREE.processes[0].to_dict()

RECORDS: list[Any] = [
    FIT, Growth(per_hour=FIT), LOAD, LoadSummary(command=("wrk", "x"), exit_code=0, output="ok"),
    Trims(), Stop("exited", 0.0), EVIDENCE, Evidence(tree=TreeTrace(root=1)), TREE, PROOF,
    INSIDE, Inside(pid=4, pythonmalloc=None, allocator="glibc"), HOST, Host(), CONFIG, Config(),
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
        (Trims, {"events": [{**TRIM.to_dict(), "t": -1}]}, "trims.events[].t: impossible value"),
        (TreeTrace, {**TREE.to_dict(), "stride": 0}, "tree.stride 0: a timeline point"),
        (TrimEvent, {**TRIM.to_dict(), "released": True}, "released: expected a whole number"),
        (TrimEvent, {**TRIM.to_dict(), "took_s": "fast"}, "trim event.took_s: expected a number"),
        (Stop, {"how": "SIGFOO", "took_s": 1}, "stop.how 'SIGFOO'"),
        (Evidence, {"tree": ROOT, "warnings": [1]}, "evidence.warnings: expected text"),
        (Evidence, {"tree": [], "stdout": ""}, "evidence.tree: expected an object"),
        (Evidence, {"tree": ROOT, "growth": {"mib_per_hour": 3}}, "mib_per_hour: expected an obj"),
        (Evidence, {"stdout": ""}, "evidence.tree: expected an object"),
        (Evidence, {"tree": ROOT, "processes": [{"pid": "10"}]}, "evidence.processes[].pid: exp"),
        (Evidence, {"tree": ROOT, "inside": [{"pid": 1.5}]}, "evidence.inside[].pid: expected"),
        (TreeTrace, {**ROOT, "peak_rss": -1}, "tree.peak_rss: impossible value -1"),
        (TreeTrace, {**ROOT, "cpu_s": "1"}, "tree.cpu_s: expected a number"),
        (TreeTrace, {**ROOT, "stride": 1.5}, "tree.stride: expected a whole number"),
        (TreeTrace, {**ROOT, "timeline": [[0.5, 1, 2]]}, "tree.timeline[]: expected [t, rss, pss"),
        (TreeTrace, {**ROOT, "timeline": [[0.5, -1, 2, 1]]}, "tree.timeline[].rss: impossible"),
        (TreeTrace, {**ROOT, "timeline": [[None, 1, 2, 1]]}, "tree.timeline[].t: expected a num"),
        (TreeTrace, {**ROOT, "processes": [3]}, "tree.processes[]: expected an object"),
        (TreeTrace, {**ROOT, "processes": [{**TRACE, "name": 7}]}, "tree.processes[].name: exp"),
        (TreeTrace, {**ROOT, "processes": [{**TRACE, "ppid": -1}]}, "processes[].ppid: impossible"),
        (
            TreeTrace,
            {**ROOT, "processes": [{**TRACE, "timeline": [[0, 1, "x"]]}]},
            "tree.processes[].timeline[].pss: expected a whole number",
        ),
        (ProcessTrace, {**TRACE, "cpu_s": float("inf")}, "process.cpu_s: impossible value inf"),
        (ProcessTrace, {**TRACE, "peak_rss": 2.5}, "process.peak_rss: expected a whole number"),
        (ProcessProof, {**PROOF.to_dict(), "pid": None}, "proof.pid: expected a whole number"),
        (ProcessProof, {**PROOF.to_dict(), "allocator": 5}, "proof.allocator: expected text"),
        (ProcessProof, {**PROOF.to_dict(), "conflict": ["a"]}, "proof.conflict: expected text"),
        (Inside, {**INSIDE.to_dict(), "pymalloc_blocks": -2}, "inside.pymalloc_blocks: impossib"),
        (Inside, {**INSIDE.to_dict(), "pythonmalloc": 1}, "inside.pythonmalloc: expected text"),
        (Inside, {**INSIDE.to_dict(), "version": 5.3}, "inside.version: expected text"),
        (Inside, {**INSIDE.to_dict(), "malloc_conf": {}}, "inside.malloc_conf: expected a list"),
        (
            Inside,
            {**INSIDE.to_dict(), "malloc_conf": [{"key": "narenas", "in_effect": "no"}]},
            "inside.malloc_conf[].in_effect: expected true or false",
        ),
        (
            Inside,
            {**INSIDE.to_dict(), "jemalloc_options": {"narenas": [8]}},
            "inside.jemalloc_options.narenas: expected a plain value",
        ),
        (Inside, {**INSIDE.to_dict(), "jemalloc_options": 8}, "inside.jemalloc_options: expected"),
        (Inside, {"pid": 3, "error": 42}, "inside.error: expected text"),
        (MallocConfKey, {"key": None, "in_effect": True}, "malloc_conf.key: expected text"),
        (MallocConfKey, {"key": "k", "in_effect": True, "reason": 1}, "malloc_conf.reason: exp"),
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


def test_the_hooks_start_event_reads_as_inside_and_writes_as_before(tmp_path: Path) -> None:
    """A real Python process under the real hook: its start event becomes a typed record
    whose JSON is, byte for byte, the object results files have always held."""
    hook = inject.prepare(str(tmp_path))
    env = {**os.environ, **inject.environ(hook, None, None)}
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True, timeout=60)
    (start,) = [e for e in inject.read_events(hook) if e["event"] == "start"]
    inside = Inside.of_event(start)
    assert inside.error is None and not inside.malformed
    assert inside.pid == start["pid"] and inside.pymalloc_blocks == start["pymalloc_blocks"]
    assert inside.allocator and inside.allocator == start["inside"]["allocator"]
    before = {k: start[k] for k in ("pid", "pymalloc_blocks", "pythonmalloc")} | start["inside"]
    assert json.dumps(inside.to_dict()) == json.dumps(before)


HOOK_SAW = {"allocator": "jemalloc", "version": "5.3.0", "malloc_conf": [], "source": "x"}


@pytest.mark.parametrize(
    ("event", "pid", "message"),
    [
        ({"pid": 7, "pymalloc_blocks": "10", "inside": HOOK_SAW}, 7, "pymalloc_blocks: expected"),
        ({"pid": 7, "pymalloc_blocks": -1, "inside": HOOK_SAW}, 7, "pymalloc_blocks: impossible"),
        ({"pid": 7}, 7, "start event.inside: expected an object, not NoneType"),
        ({"pid": 7, "inside": "jemalloc"}, 7, "start event.inside: expected an object"),
        ({"pid": True, "inside": HOOK_SAW}, None, "start event.pid: expected a whole number"),
        ({"pid": 7, "inside": {**HOOK_SAW, "malloc_conf": [{"key": "narenas", "in_effect": 1}]}},
         7, "start event.malloc_conf[].in_effect: expected true or false"),
        ({"pid": 7, "inside": {**HOOK_SAW, "jemalloc_options": {"narenas": {"n": 8}}}},
         7, "start event.jemalloc_options.narenas: expected a plain value"),
        ({"pid": 7, "inside": {**HOOK_SAW, "version": 5}}, 7, "start event.version: expected"),
    ],
)  # fmt: skip
def test_a_malformed_start_event_says_so_and_counts_nothing(
    event: dict[str, Any], pid: int | None, message: str
) -> None:
    """The hook's events are written inside the user's process: a malformed one must not
    crash the run nor become a figure (no pymalloc count, no MALLOC_CONF verdict)."""
    inside = Inside.of_event({"event": "start", **event})
    assert inside.malformed and inside.pid == pid
    assert inside.error is not None and inside.error.startswith(MALFORMED)
    assert message in inside.error
    assert (inside.pymalloc_blocks, inside.allocator, inside.malloc_conf) == (None, None, None)
    assert Inside.from_dict(json.loads(json.dumps(inside.to_dict()))) == inside
    off = builtin("jemalloc-pymalloc-off")
    assert setting_problems(off, [inside], []) == []  # nothing read, nothing judged


def test_the_hooks_own_error_is_kept_but_is_not_malformed() -> None:
    inside = Inside.of_event({"event": "start", "pid": 3, "inside": {"error": "OSError: x"}})
    assert (inside.pid, inside.error, inside.malformed) == (3, "OSError: x", False)
    assert inside.to_dict() == {
        "pid": 3, "pymalloc_blocks": None, "pythonmalloc": None, "error": "OSError: x"
    }  # fmt: skip


def test_the_hooks_trim_and_exit_events_read_typed_and_write_as_before(tmp_path: Path) -> None:
    """A real Python process under the real hook with --trim-every: its trim and exit
    events become typed records whose JSON is what results files have always held."""
    hook = inject.prepare(str(tmp_path))
    env = {**os.environ, **inject.environ(hook, None, 0.1)}
    subprocess.run([sys.executable, "-c", "import time; time.sleep(0.6)"], env=env, check=True,
                   timeout=60)  # fmt: skip
    raw = inject.read_events(hook)
    read = HookEvents.read(raw)
    assert read.malformed == () and len(read.inside) == 1 and len(read.exits) == 1
    trims = [e for e in raw if e["event"] == "trim"]
    assert trims and [json.dumps(t.to_dict()) for t in read.trims] == [json.dumps(t) for t in trims]
    (end,) = [e for e in raw if e["event"] == "exit"]
    assert read.exits[0].to_dict() == {k: end[k] for k in ("pid", "rss", "heap")}


def test_malformed_trim_exit_and_restored_events_are_said_and_count_nothing() -> None:
    good = TRIM.to_dict()
    read = HookEvents.read(
        [
            good,
            {**good, "returned": "lots"},
            {**good, "rss_before": -1},
            {"event": "exit", "pid": 5, "rss": "big", "heap": None},
            {"event": "exit", "pid": 5, "rss": 10, "heap": [1]},
            {"event": "start", "pid": 6, "restored": "yes", "inside": HOOK_SAW},
            {"event": "start", "pid": 7, "restored": {"action": "restored"}, "inside": HOOK_SAW},
            {"event": "who knows"},
        ]
    )
    assert read.trims == (TRIM,) and read.exits == () and read.restored == 1
    assert read.malformed == (
        "malformed trim event from allocscope's hook: trim event.returned: expected a whole "
        "number, not 'lots'",
        "malformed trim event from allocscope's hook: trim event.rss_before: impossible value -1",
        "malformed exit event from allocscope's hook: exit event.rss: expected a whole number, "
        "not 'big'",
        "malformed exit event from allocscope's hook: exit event.heap: expected an object, not "
        "list",
    )


def test_trims_count_what_they_gave_back_not_what_grew_meanwhile() -> None:
    grew = TrimEvent(5, 1.0, 2**20, 2**20 + 8192, -8192, 0, 0.001)
    trims = Trims.of([TRIM, grew])
    assert (trims.count, trims.returned_bytes) == (2, 4096)
    assert Trims.from_dict(json.loads(json.dumps(trims.to_dict()))) == trims
