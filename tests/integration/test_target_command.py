"""compare/bench -- CMD: real Python and Ruby commands under real allocators (issue 11)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from allocscope import exitcodes
from allocscope.bench.evidence import Evidence
from allocscope.bench.record import RunRecord
from allocscope.bench.results import Results, load
from allocscope.bench.results.header import AutoRepeats
from tests.conftest import JEMALLOC_VERSION, run_allocscope

HERE = Path(__file__).resolve().parent
PY = sys.executable

PYTHON_JOB = """
import subprocess, sys, time
keep = [("y" * (700 + i % 5000)) for i in range(30000) if i % 3 == 0]
# the child lives long enough to be sampled from outside, even on a loaded machine
child = "import time; x = [b'a' * 5000 for _ in range(5000)]; time.sleep(0.6)"
subprocess.run([sys.executable, "-c", child], check=True)
time.sleep(0.3)
print("done", len(keep))
"""

RUBY_JOB = """
keep = []
40_000.times { |i| s = "y" * (700 + i % 5000); keep << s if i % 3 == 0 }
sleep 0.3
puts keep.size
"""


def compare(tmp_path: Path, *args: str, timeout: float = 180) -> tuple[int, str, Results | None]:
    out = tmp_path / "out"
    if "--repeats" not in args and "-r" not in args:  # one run each: these test behaviour
        args = ("--repeats", "1", *args)
    proc = run_allocscope("compare", "-q", "--no-chart", "-o", str(out), *args, timeout=timeout)
    path = out / "results.json"
    return proc.returncode, proc.stdout + proc.stderr, load(str(path)) if path.exists() else None


def evidence(run: RunRecord) -> Evidence:
    """A command's or service's run carries its evidence."""
    assert run.evidence is not None, run
    return run.evidence


def gone(results: Results) -> list[int]:
    """Processes of any run's tree that still exist (must be none)."""
    pids = {p.pid for r in results.runs for p in evidence(r).tree.processes}
    return [pid for pid in pids if os.path.exists(f"/proc/{pid}/stat") and not _zombie(pid)]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_python_command_with_a_child_glibc_against_jemalloc(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(PYTHON_JOB)
    code, text, results = compare(
        tmp_path, "-V", "glibc", "-V", "jemalloc-tuned", "--", PY, str(job)
    )
    assert code == exitcodes.OK, text
    assert results is not None  # one run each, in the order the seed shuffled them
    assert sorted(r.variant for r in results.runs) == ["glibc", "jemalloc-tuned"]
    assert sorted(r.order for r in results.runs) == [0, 1] and isinstance(results.seed, int)
    for run in results.runs:
        assert run.ok and run.kind == "command", run.failures
        expected = "glibc" if run.variant == "glibc" else "jemalloc"
        assert run.proof is not None and run.proof.allocator == expected
        # the command and its child, each proved from outside by its symbols
        assert len(run.proof.checks) >= 2 and all(c.passed for c in run.proof.checks)
        found = evidence(run)
        assert {p.allocator for p in found.processes} == {expected}
        # and from inside: the injected hook ran in both Python processes
        assert len(found.inside) >= 2
        assert {i.allocator for i in found.inside} == {expected}
        # and at exit, the allocator's own statistics (jemalloc's stats, glibc's mallinfo2)
        heaps = [h.heap for h in found.exit_heaps]
        assert len(heaps) >= 2 and all(h and "error" not in h for h in heaps)
        assert run.metrics["rss_peak"] > 20 * 2**20 and run.metrics["cpu_s"] > 0
        assert run.metrics["pss_peak"] > 0 and run.timeline
        assert "done 10000" in found.stdout
    assert not gone(results)
    assert "cmd: python" in text and "end MiB" in text


def test_ruby_command(tmp_path: Path, jemalloc: str) -> None:
    job = tmp_path / "job.rb"
    job.write_text(RUBY_JOB)
    code, text, results = compare(tmp_path, "-V", "glibc", "-V", "jemalloc", "--", "ruby", str(job))
    assert code == exitcodes.OK, text
    assert results is not None
    by = {r.variant: r for r in results.runs}
    assert by["glibc"].proof and by["glibc"].proof.allocator == "glibc"
    je = by["jemalloc"].proof
    assert je and (je.allocator, je.version, je.path) == ("jemalloc", JEMALLOC_VERSION, jemalloc)
    assert all(not evidence(r).inside for r in results.runs)  # not Python


def test_a_command_exiting_non_zero_fails_its_run_with_stderr_kept(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--", PY, "-c",
        "import sys, time; time.sleep(0.3); print('broken input', file=sys.stderr); sys.exit(3)",
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert results is not None
    run = results.runs[0]
    assert not run.ok and run.exit_code == 3
    assert "the command exited with status 3" in run.failures
    assert "broken input" in run.stderr and "FAILED glibc" in text


def test_a_command_that_never_ends_is_killed_with_its_group(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--timeout", "2", "--", "sh", "-c",
        "sleep 300 & sleep 300 & wait",
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert results is not None
    run = results.runs[0]
    assert run.failures == ["timed out after 2 s: process group killed"]
    assert len(evidence(run).tree.processes) == 3  # sh and both sleeps were seen
    assert not gone(results)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the command after -- is empty"),
        (["no-such-program-here"], "command not found: no-such-program-here (not on PATH)"),
        (["/nonexistent/bin/prog"], "command not found: /nonexistent/bin/prog"),
        ([str(HERE / "apps" / "config.ru")], "command is not executable"),
    ],
)
def test_bad_commands_exit_3_before_any_run(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = run_allocscope("compare", "-o", str(tmp_path / "out"), "--", *argv)
    assert proc.returncode == exitcodes.BAD_INPUT
    assert proc.stderr.startswith("allocscope compare: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_bench_runs_one_variant_on_a_command(tmp_path: Path) -> None:
    proc = run_allocscope("bench", "-q", "--no-chart", "--", PY, "-c", "import time; "
                          "time.sleep(0.3)")  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "glibc" in proc.stdout and "cmd: python" in proc.stdout
    two = run_allocscope("bench", "-V", "glibc", "-V", "jemalloc", "--", PY, "-c", "0")
    assert two.returncode == exitcodes.BAD_INPUT and "bench runs one variant" in two.stderr


def test_user_callable_as_a_workload(tmp_path: Path) -> None:
    (tmp_path / "myjob.py").write_text(
        "def build():\n"
        "    keep, junk = [], []\n"
        "    for i in range(100000):\n"
        "        s = 'x' * (600 + i % 3000)\n"
        "        (keep if i % 20 == 0 else junk).append(s)\n"
        "        if len(junk) > 1000:\n"
        "            junk.clear()\n"
        "    return keep\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("LD_PRELOAD", None)
    import subprocess

    proc = subprocess.run(
        [PY, "-m", "allocscope", "compare", "-q", "--no-chart", "-V", "glibc", "-V",
         "jemalloc-tuned", "-w", "myjob:build", "--repeats", "1", "--warmup", "0",
         "--settle", "0.3", "-o", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    results = load(str(tmp_path / "out" / "results.json"))
    assert results.workloads() == ["myjob:build"]
    for run in results.runs:
        assert run.counts and run.metrics["rss_peak"] > run.metrics["rss_before"]
        assert "rss_retained" in run.metrics
    bad = run_allocscope("compare", "-w", "no_such_module_xyz:build")
    assert bad.returncode == exitcodes.BAD_INPUT and "no module named" in bad.stderr


TRIM_JOB = """
import threading, time
def churn():
    keep = []
    for r in range(4):
        junk = [("z" * (600 + i % 4000)) for i in range(20000)]
        keep += junk[::50]
        del junk
        time.sleep(0.25)
ts = [threading.Thread(target=churn) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
time.sleep(0.6)
"""


def test_mitigation_variants_prove_their_setting(tmp_path: Path) -> None:
    job = tmp_path / "trim.py"
    job.write_text(TRIM_JOB)
    code, text, results = compare(
        tmp_path, "-V", "name=trim,trim=0.3", "-V", "jemalloc-pymalloc-off",
        "-V", "jemalloc-decay-short", "--", PY, str(job),
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    by = {r.variant: r for r in results.runs}
    trims = evidence(by["trim"]).trims
    assert trims.count >= 2 and len(trims.events) == trims.count  # every malloc_trim, typed
    assert all(i.pymalloc_blocks == 0 for i in evidence(by["jemalloc-pymalloc-off"]).inside)
    conf = evidence(by["jemalloc-decay-short"]).inside[0].malloc_conf or ()
    assert {c.key for c in conf if c.in_effect} >= {"dirty_decay_ms", "muzzy_decay_ms"}


def test_a_setting_that_does_not_take_effect_fails_the_run(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "name=trim,trim=0.2",
        "-V", "name=typo,lib=jemalloc,env=MALLOC_CONF=dirty_decy_ms:5",
        "--", "sh", "-c", "sleep 0.6",
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert results is not None
    by = {r.variant: r for r in results.runs}
    assert any("runs inside Python only" in f for f in by["trim"].failures)
    assert any("jemalloc rejected MALLOC_CONF" in f for f in by["typo"].failures)


def test_the_hook_chains_to_the_users_sitecustomize(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "marker"
    (site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    import subprocess

    proc = subprocess.run(
        [PY, "-m", "allocscope", "bench", "-q", "--no-chart", "-o", str(tmp_path / "out"),
         "--", PY, "-c", "import sitecustomize, time; time.sleep(0.2)"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert marker.read_text() == "ran"  # the user's own sitecustomize still ran
    run = load(str(tmp_path / "out" / "results.json")).runs[0]
    assert evidence(run).inside[0].allocator == "glibc"  # and ours did too


def test_compare_on_a_command_is_decisive_without_flags(tmp_path: Path) -> None:
    """No --repeats: 5 interleaved runs of each, a verdict beside every ratio and the
    plain-words line (issue 17: it was 1 run, n<5 everywhere, no line)."""
    job = (
        "import threading\n"
        "keep = []\n"
        "def work():\n"
        "    junk = []\n"
        "    for i in range(60000):\n"
        "        s = b'x' * (600 + i % 5000)\n"
        "        (keep if i % 50 == 0 else junk).append(s)\n"
        "        if len(junk) > 2000: junk.clear()\n"
        "ts = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
    )
    out = tmp_path / "out"
    proc = run_allocscope(
        "compare", "--no-chart", "-o", str(out), "-V", "glibc", "-V", "jemalloc-tuned",
        "--", PY, "-c", job, timeout=300,
    )  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    results = load(str(out / "results.json"))
    order = [(r.repeat, r.variant) for r in results.runs]
    assert [r for r, _ in order] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # interleaved rounds
    assert all(r.counts for r in results.runs)
    tables = proc.stdout.split("median of the runs")[0]  # the legend explains both words
    assert "n<5" not in tables and "one run" not in tables
    assert "what this means: " in proc.stdout and "jemalloc-tuned against glibc: " in proc.stdout
    assert "runs: 5 of each variant by default, interleaved" in proc.stdout
    c = results.comparison(results.workloads()[0], "jemalloc-tuned", "cpu_s")
    assert c is not None and c.verdict in ("significant", "within noise", "below floor")


def test_default_runs_stop_at_the_budget_once_a_run_is_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --repeats, runs of a minute or more get only the rounds that fit --budget,
    and the footer says why (LONG_RUN made short here, so the test takes seconds)."""
    from allocscope.bench import api, session
    from allocscope.bench.plan import make
    from allocscope.bench.variants import select
    from allocscope.report import table

    monkeypatch.setattr(session, "LONG_RUN", 0.1)
    sleep = [PY, "-c", "import time; time.sleep(0.4)"]
    results = api.run(make(select(["glibc", "jemalloc"]), command=sleep, budget=1.0))
    assert [r.repeat for r in results.runs] == [1, 1]  # one round: a second would pass 1 s
    stopped = results.session.repeats_stopped
    assert stopped is not None and stopped.startswith(
        "1 run of each variant, not 5: a run took "
    ), stopped
    assert stopped.endswith("another round would pass the 1 s budget (--budget S, or --repeats N)")
    assert f"runs: stopped at {stopped}" in table.legend(results)
    assert table.what_this_means(results, results.workloads()[0]) == (
        "one run: no interval, no verdict (run each variant 5 times: --repeats 5)"
    )


# It holds its memory a while, so its peak and its allocator are read from outside even on
# a loaded machine (a process gone in 0.2 s may be missed between two samples).
ALLOCATES = (
    "import time; x = [b'a' * (700 + i % 5000) for i in range(8000)]; time.sleep(0.5); "
    "print(len(x))"
)


def test_repeats_auto_for_a_command_stops_at_its_budget_and_says_so(tmp_path: Path) -> None:
    """The workloads' rule, through the same loop: no interval is within ±0.001 %, so
    repeats are added one at a time after the first 5 until the budget is spent."""
    code, text, results = compare(
        tmp_path, "-V", "glibc", "-V", "jemalloc", "--repeats", "auto", "--target", "0.001",
        "--budget", "4", "--", PY, "-c", ALLOCATES,
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    name = results.workloads()[0]
    why = (results.session.repeats_auto or {})[name]
    assert why.startswith("budget spent after "), why
    done = int(why.split()[3])
    assert "; still wide: " in why and done >= 5
    assert {r.repeat for r in results.runs} == set(range(1, done + 1))
    assert sorted(r.variant for r in results.runs) == ["glibc"] * done + ["jemalloc"] * done
    assert all(r.ok and r.kind == "command" for r in results.runs), text
    assert results.config.repeats_auto == AutoRepeats(target=0.00001, budget_s=4.0, max=20)
    assert f"--repeats auto, {name}: stopped: budget spent after {done} repeats" in text
    assert not gone(results)


def test_repeats_auto_for_a_command_stops_once_narrow(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "-V", "jemalloc", "--repeats", "auto", "--target", "60",
        "--", PY, "-c", ALLOCATES,
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    why = (results.session.repeats_auto or {})[results.workloads()[0]]
    assert why == "narrow: every headline interval within ±60%", why
    # 5 before the first look, then one at a time (a short run's CPU time is a few clock
    # ticks: its interval may need more) until narrow
    repeats = {r.repeat for r in results.runs}
    assert repeats == set(range(1, max(repeats) + 1)) and 5 <= max(repeats) < 20


FORGED_EVENT = """
import json, os, time
# what a user's process could write where the hook writes: the hook's file is untrusted
bad = {"event": "start", "pid": 424242, "pymalloc_blocks": "lots",
       "inside": {"allocator": "glibc", "malloc_conf": [{"key": "narenas"}]}}
path = os.path.join(os.environ["ALLOCSCOPE_INJECT_DIR"], "events", "424242.jsonl")
with open(path, "w") as f:
    f.write(json.dumps(bad) + "\\n")
time.sleep(0.3)
"""


def test_a_malformed_hook_event_is_said_and_counts_for_nothing(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "jemalloc-pymalloc-off", "--", PY, "-c", FORGED_EVENT
    )
    assert code == exitcodes.OK, text
    assert results is not None
    (run,) = results.runs
    assert run.ok, run.failures  # "lots" pymalloc blocks did not fail the variant
    real, forged = sorted(evidence(run).inside, key=lambda i: i.pid == 424242)
    assert (real.allocator, real.pymalloc_blocks, real.error) == ("jemalloc", 0, None)
    assert forged.malformed and forged.pid == 424242 and forged.pymalloc_blocks is None
    said = "process 424242: malformed start event from allocscope's hook: start event."
    assert any(w.startswith(said) for w in evidence(run).warnings)
    assert "malformed start event" in text


FORGED_TRIM_AND_EXIT = """
import json, os, time
bad = [{"event": "trim", "pid": 424243, "t": 1.0, "returned": "lots"},
       {"event": "exit", "pid": 424243, "rss": "big", "heap": None}]
path = os.path.join(os.environ["ALLOCSCOPE_INJECT_DIR"], "events", "424243.jsonl")
with open(path, "w") as f:
    f.write("".join(json.dumps(e) + "\\n" for e in bad))
time.sleep(0.8)
"""


def test_malformed_trim_and_exit_events_are_said_and_count_for_nothing(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "name=trim-fast,trim=0.2", "--", PY, "-c", FORGED_TRIM_AND_EXIT
    )
    assert code == exitcodes.OK, text
    assert results is not None
    (run,) = results.runs
    assert run.ok, run.failures  # the real process's trims ran and count
    trims = evidence(run).trims
    assert trims.count >= 1 and {e.pid for e in trims.events} == {evidence(run).inside[0].pid}
    assert [h.pid for h in evidence(run).exit_heaps] == [evidence(run).inside[0].pid]
    said = [w for w in evidence(run).warnings if "malformed" in w]
    assert [w.split(":")[0] for w in said] == [
        "malformed trim event from allocscope's hook",
        "malformed exit event from allocscope's hook",
    ]
