"""compare/bench --serve: real servers (gunicorn + Flask, uvicorn + FastAPI, Puma + Rack)
under real allocators, loaded on loopback, and servers that misbehave (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allocscope import exitcodes
from allocscope.bench.results import load
from tests.conftest import child_env, run_allocscope
from tests.integration.test_target_command import compare, evidence, gone

APPS = Path(__file__).resolve().parent / "apps"
PY = sys.executable
# With allocscope's post_fork hook: without it jemalloc's background thread is lost in every
# worker, and the jemalloc variant's proof fails (see the test below).
GUNICORN_BARE = f"{PY} -m gunicorn --chdir {APPS} -b 127.0.0.1:{{port}} -w 2"
GUNICORN = f"{GUNICORN_BARE} -c python:allocscope.gunicorn_conf"
MISBEHAVING = f"{PY} {APPS / 'misbehaving.py'} {{port}}"
# Seconds, not minutes: enough for every phase to happen, small for CI.
SHORT = ("--duration", "2s", "--warm", "0.5s", "--settle", "0.3,0.6", "--concurrency", "8")


def check_service_run(run: object, expected: str, processes: int) -> None:
    from allocscope.bench.record import RunRecord

    assert isinstance(run, RunRecord)
    assert run.ok and run.kind == "service", run.failures
    assert run.proof is not None and run.proof.allocator == expected
    found = evidence(run)
    proved = {p.pid: p.allocator for p in found.processes}
    assert len(proved) >= processes and set(proved.values()) == {expected}
    events = [m.event for m in run.marks]
    for phase in ("start", "ready", "warmup_start", "load_start", "load_end", "settle", "stop"):
        assert phase in events, (phase, events)
    assert events.index("load_start") < events.index("load_end") < events.index("stop")
    m = run.metrics
    assert m["requests"] > 0 and m["rps"] > 0 and m["error_count"] == 0
    assert found.load is not None and found.load.max_ms is not None
    assert 0 < m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] <= found.load.max_ms + 0.01
    assert m["rss_peak"] >= m["rss_retained"] > 10 * 2**20
    assert "rss_settle_0.3" in m and "rss_settle_0.6" in m
    from allocscope.bench.kinds.process import service, tree

    assert found.growth is not None and found.stop is not None
    growth = found.growth.per_10k_requests
    assert growth is not None
    # the verdict is the one its own slope and error give (not merely a known word)
    said = tree.verdict(growth.slope, growth.stderr, service.NOISE_MIB_PER_10K)
    assert growth.points >= 3 and growth.verdict == said, growth
    assert found.stop.how in ("SIGTERM", "exited")


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_flask_under_gunicorn_glibc_against_jemalloc(tmp_path: Path, worker_class: str) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "-V", "jemalloc-tuned",
        "--serve", f"{GUNICORN} -k {worker_class} --threads 2 flask_app:app",
        "--ready", "/healthz", *SHORT,
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    by = {r.variant: r for r in results.runs}
    check_service_run(by["glibc"], "glibc", processes=3)  # the arbiter and 2 workers
    check_service_run(by["jemalloc-tuned"], "jemalloc", processes=3)
    assert not gone(results)
    assert "serve: python" in text and "req/s" in text and "growth MiB" in text


def test_workers_that_lost_the_background_thread_are_restored_by_default(tmp_path: Path) -> None:
    """The README's --serve example with bare gunicorn: jemalloc-tuned is proved and measured
    in every worker, and the table says what the deployment needs (issue 17)."""
    code, text, results = compare(
        tmp_path, "-V", "glibc", "-V", "jemalloc-tuned",
        "--serve", f"{GUNICORN_BARE} flask_app:app", "--ready", "/healthz", "--repeats", "1",
        *SHORT,
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    by = {r.variant: r for r in results.runs}
    check_service_run(by["jemalloc-tuned"], "jemalloc", processes=3)
    (note,) = evidence(by["jemalloc-tuned"]).warnings
    assert "restored after fork by allocscope" in note, note
    assert "-c python:allocscope.gunicorn_conf" in note and "forksafe.install()" in note
    assert "lost at fork in 2 processes" in note  # both workers, not the arbiter
    assert not evidence(by["glibc"]).warnings  # nothing to restore under glibc
    assert "restored after fork by allocscope" in text


def test_as_deployed_workers_that_lost_the_background_thread_fail_and_name_the_fix(
    tmp_path: Path,
) -> None:
    code, text, results = compare(
        tmp_path, "-V", "jemalloc-tuned", "--as-deployed", "--repeats", "1",
        "--serve", f"{GUNICORN_BARE} flask_app:app", "--ready", "/healthz", *SHORT,
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert results is not None
    (run,) = results.runs
    lost = [f for f in run.failures if "lost at fork" in f]
    assert len(lost) == 2, run.failures  # each of the two workers, not the arbiter
    assert all("-c python:allocscope.gunicorn_conf" in f for f in lost), lost


def test_fastapi_under_uvicorn_with_a_requests_file(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps({"method": "GET", "path": "/"}) + "\n"
        + json.dumps({"method": "POST", "path": "/echo", "body": {"b": 1, "a": "x" * 2000}})
        + "\n"
    )  # fmt: skip
    code, text, results = compare(
        tmp_path, "-V", "jemalloc-tuned",
        "--serve", f"{PY} -m uvicorn --app-dir {APPS} fastapi_app:app --port {{port}} "
                   "--log-level warning",
        "--ready", "/healthz", "--requests", str(requests), *SHORT,
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    check_service_run(results.runs[0], "jemalloc", processes=1)


def test_rack_app_under_puma_glibc_against_jemalloc(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "-V", "jemalloc",
        "--serve", f"puma -b tcp://127.0.0.1:{{port}} -t 2:2 {APPS / 'config.ru'}",
        "--ready", "/healthz", *SHORT,
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    by = {r.variant: r for r in results.runs}
    check_service_run(by["glibc"], "glibc", processes=1)
    check_service_run(by["jemalloc"], "jemalloc", processes=1)
    assert all(not evidence(r).inside for r in results.runs)  # Ruby: outside only
    assert not gone(results)


def test_users_own_load_generator(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", f"{MISBEHAVING} fine", "--duration", "2s",
        "--settle", "0.2", "--load-cmd", "wrk -t1 -c4 -d1s {url}/",
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    run = results.runs[0]
    assert run.ok, run.failures
    load_ = evidence(run).load
    assert load_ is not None and load_.exit_code == 0 and "Requests/sec" in (load_.output or "")
    assert run.metrics["rps"] > 0 and run.metrics["requests"] > 0


def test_repeats_auto_for_a_service_stops_at_its_budget_and_says_so(tmp_path: Path) -> None:
    """Services use the workloads' rule through the same loop: after the first 5 repeats,
    no interval within ±0.001 % and the 1 s budget spent."""
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", f"{MISBEHAVING} fine", "--repeats", "auto",
        "--target", "0.001", "--budget", "1", "--duration", "0.3s", "--warm", "0",
        "--settle", "0.1", "--concurrency", "4",
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    name = results.workloads()[0]
    why = (results.session.repeats_auto or {})[name]
    assert why.startswith("budget spent after 5 repeats; still wide: glibc "), why
    assert [r.repeat for r in results.runs] == [1, 2, 3, 4, 5]
    assert all(r.ok and r.kind == "service" for r in results.runs), text
    assert f"--repeats auto, {name}: stopped: budget spent after 5 repeats" in text
    assert not gone(results)


def test_a_server_that_never_becomes_ready(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", f"{MISBEHAVING} never-ready",
        "--ready-timeout", "1.5s", "--duration", "1s",
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert results is not None
    assert results.runs[0].failures == ["the server was not ready within 1.5 s (GET /)"]
    assert not gone(results)


def test_a_server_that_dies_under_load(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", f"{MISBEHAVING} die-after 200", "--warm", "0",
        "--duration", "5s",
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert results is not None
    run = results.runs[0]
    assert run.failures == ["the server exited with status 7 during the load"]
    load_ = evidence(run).load
    # what the load saw is kept: the readiness check had one of the 200 answers, and a
    # response being written by another thread when the server died may be cut short
    assert load_ is not None and load_.ok is not None and load_.error_count is not None
    assert 190 <= load_.ok <= 199 and load_.error_count > 0
    assert not gone(results)


def test_a_server_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", f"{MISBEHAVING} ignore-sigterm", "--duration", "1s",
        "--settle", "0.2", "--grace", "1s",
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    run = results.runs[0]
    stop = evidence(run).stop
    assert run.ok and stop is not None and stop.how == "SIGKILL"
    assert "ignored SIGTERM" in text
    assert not gone(results)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--serve", f"{MISBEHAVING} fine", "--ready", "/nope"], "answered 404 Not Found"),
        (["--serve", "python3 -m http.server"], "the command has no {port}"),
        (["--serve", "no-such-server {port}"], "command not found: no-such-server"),
        (["--serve", f"{MISBEHAVING} fine", "--ready", "nope"], "expected a path starting"),
        (["--serve", f"{MISBEHAVING} fine", "--duration", "5 parsecs"], "expected a duration"),
        (["--serve", f"{MISBEHAVING} fine", "--load-cmd", "wrk"], "--load-cmd has no {url}"),
    ],
)
def test_bad_service_input_exits_3(tmp_path: Path, args: list[str], message: str) -> None:
    if "--duration" not in args:
        args = [*args, "--duration", "1s"]
    proc = run_allocscope("compare", "-V", "glibc", "-o", str(tmp_path / "o"), *args)
    assert proc.returncode == exitcodes.BAD_INPUT, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("allocscope compare: ")


def test_a_malformed_requests_file_exits_3(tmp_path: Path) -> None:
    bad = tmp_path / "requests.jsonl"
    bad.write_text('{"path": "/"}\n{"path": "/x", "method": 5}\n')
    proc = run_allocscope("compare", "--serve", f"{MISBEHAVING} fine", "--duration", "1s",
                          "--requests", str(bad))  # fmt: skip
    assert proc.returncode == exitcodes.BAD_INPUT
    assert "line 2: method 5 is not an HTTP method" in proc.stderr


def test_an_interrupted_soak_keeps_what_it_measured(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    proc = subprocess.Popen(
        [PY, "-m", "allocscope", "compare", "-V", "glibc", "--no-chart", "-o", str(out),
         "--serve", f"{MISBEHAVING} fine", "--duration", "60s", "--warm", "0",
         "--concurrency", "2", "--progress-every", "0.5s"],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    path = out / "results.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (path.exists() and "in progress" in path.read_text()):
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == exitcodes.INTERRUPTED, err
    assert "load" in err and "tree RSS" in err  # progress lines were shown
    results = load(str(path))
    run = results.runs[-1]
    assert not run.ok and any("interrupted" in f for f in run.failures)
    growth = evidence(run).growth
    assert run.timeline and growth is not None and growth.verdict is not None
    assert not gone(results)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_ours(int(p), str(out))]


def _is_ours(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False


def test_a_request_count_is_sent_exactly(tmp_path: Path) -> None:
    code, text, results = compare(
        tmp_path, "-V", "glibc", "--serve", f"{MISBEHAVING} fine", "--load", "200",
        "--duration", "60s", "--warm", "0", "--settle", "0.1", "--concurrency", "4",
    )  # fmt: skip
    assert code == exitcodes.OK, text
    assert results is not None
    run = results.runs[0]
    assert run.metrics["requests"] == 200 and run.metrics["load_s"] < 60
