"""Pure logic behind commands and services: tree sampling on a fake /proc, fits, bounded
timelines, latency histograms, requests files, durations, settings proofs."""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import types
from pathlib import Path

import pytest

from allocscope.bench.evidence import (
    Inside,
    MallocConfKey,
    ProcessPoint,
    ProcessProof,
    TreePoint,
    TrimEvent,
)
from allocscope.bench.kinds.process import load, tree
from allocscope.bench.plan import PlanError, Service, parse_duration
from allocscope.bench.variants import VariantError, builtin, parse_spec, setting_problems
from allocscope.commands import flags
from tests.conftest import leftover_children


def fake_process(root: Path, pid: int, ppid: int, name: str, rss_kb: int, pss_kb: int,
                 ticks: tuple[int, int]) -> None:  # fmt: skip
    d = root / str(pid)
    d.mkdir(parents=True)
    # comm may hold spaces and parentheses: the parser must cut at the last ')'
    fields = ["S", str(ppid), *["0"] * 9, str(ticks[0]), str(ticks[1]), *["0"] * 10]
    (d / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n")
    (d / "status").write_text(f"Name:\t{name}\nVmHWM:\t{rss_kb} kB\nVmRSS:\t{rss_kb} kB\n")
    (d / "comm").write_text(name + "\n")
    (d / "smaps_rollup").write_text(f"Rss:  {rss_kb} kB\nPss:  {pss_kb} kB\n")


def test_a_process_tree_is_sampled_whole_from_a_fake_proc(tmp_path: Path) -> None:
    fake_process(tmp_path, 100, 1, "gunicorn: master (x)", 20_000, 15_000, (50, 10))
    fake_process(tmp_path, 101, 100, "gunicorn", 30_000, 22_000, (200, 40))
    fake_process(tmp_path, 102, 100, "gunicorn", 31_000, 23_000, (100, 20))
    fake_process(tmp_path, 103, 101, "sh", 1_000, 500, (1, 1))
    fake_process(tmp_path, 200, 1, "unrelated", 99_999, 99_999, (9, 9))
    assert tree.descendants(100, str(tmp_path)) == [100, 101, 102, 103]
    t = tree.Tree(100, proc_root=str(tmp_path))
    samples = t.take(0.5)
    assert [s.name for s in samples] == ["gunicorn: master (x)", "gunicorn", "gunicorn", "sh"]
    assert t.peak_rss == (20_000 + 30_000 + 31_000 + 1_000) * 1024
    assert t.peak_pss == (15_000 + 22_000 + 23_000 + 500) * 1024
    assert t.cpu_s() == pytest.approx((60 + 240 + 120 + 2) / tree.CLOCK_TICKS, abs=0.01)
    trace = t.trace()
    assert trace.timeline == (TreePoint(0.5, t.peak_rss, t.peak_pss, 4),)
    assert {p.pid: p.ppid for p in trace.processes} == {100: 1, 101: 100, 102: 100, 103: 101}
    sh = trace.processes[-1]
    assert (sh.name, sh.timeline) == ("sh", (ProcessPoint(0.5, 1_000 * 1024, 500 * 1024),))
    assert tree.descendants(999, str(tmp_path)) == []  # gone: nothing, no exception


def test_a_series_stays_bounded_and_keeps_the_peak() -> None:
    s = tree.Series(cap=100)
    for i in range(10_000):
        s.add((float(i), 500 if i == 7777 else i % 10))
    assert len(s.points) <= 100 and s.stride >= 64
    assert max(p[1] for p in s.points) == 500  # the single spike survived
    assert s.points[0][0] < 100 and s.points[-1][0] > 9_800  # the whole span is covered


def test_the_fit_matches_statistics_and_its_error_shrinks_with_points() -> None:
    rng = random.Random(1)
    xs = [i / 10 for i in range(200)]
    ys = [3.0 + 0.5 * x + rng.gauss(0, 0.2) for x in xs]
    fit = tree.Fit()
    for x, y in zip(xs, ys, strict=True):
        fit.add(x, y)
    found = fit.slope()
    assert found is not None
    slope, err = found
    assert slope == pytest.approx(statistics.linear_regression(xs, ys).slope, rel=1e-9)
    assert 0 < err < 0.01 and abs(slope - 0.5) < 3 * err + 0.01
    few = tree.Fit()
    for x, y in zip(xs[:2], ys[:2], strict=True):
        few.add(x, y)
    assert few.slope() is None  # two points: no error estimate, no verdict


@pytest.mark.parametrize(
    ("slope", "err", "verdict"),
    [(2.7, 0.06, "growing"), (-2.8, 0.2, "shrinking"), (0.01, 0.02, "flat"),
     (0.0, 0.0, "flat"), (0.3, 0.5, "unclear")],
)  # fmt: skip
def test_verdicts(slope: float, err: float, verdict: str) -> None:
    assert tree.verdict(slope, err, noise=0.1) == verdict


def test_histogram_percentiles_are_within_a_few_percent() -> None:
    rng = random.Random(2)
    values = [rng.expovariate(1 / 0.004) for _ in range(20_000)]
    h = load.Histogram()
    for v in values:
        h.add(v)
    values.sort()
    for q in (50, 90, 99):
        exact = values[math.ceil(q / 100 * len(values)) - 1]
        assert h.percentile(q) == pytest.approx(exact, rel=0.02)
    assert h.max_s == values[-1] and h.n == len(values)
    back = load.Histogram.from_dict(h.to_dict())
    back.merge(h)
    assert back.n == 2 * h.n and back.percentile(50) == h.percentile(50)
    assert load.Histogram().percentile(50) is None


def test_requests_are_encoded_once_with_host_and_length() -> None:
    reqs = load.single("/x?y=1")
    assert reqs[0].encode("127.0.0.1:80") == b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"
    post = load._request({"method": "post", "path": "/e", "body": {"a": 1}}, "line 1")
    raw = post.encode("h")
    assert raw.startswith(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n")
    assert raw.endswith(b"Content-Length: 8\r\n\r\n" + b'{"a": 1}')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no requests in the file"),
        ('{"path": "/"}\n{oops\n', "line 2: not JSON"),
        ('["GET", "/"]\n', "line 1: expected a JSON object"),
        ('{"path": "x"}\n', "must start with /"),
        ('{"path": "/", "verb": "GET"}\n', "unknown keys verb"),
        ('{"path": "/", "headers": {"A": 1}}\n', "headers must be an object"),
        ('{"method": "GE T", "path": "/"}\n', "is not an HTTP method"),
    ],
)
def test_malformed_requests_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(text)
    with pytest.raises(load.LoadError, match=message):
        load.read_requests(str(path))


def test_load_refuses_anything_but_loopback() -> None:
    with pytest.raises(load.LoadError, match="only on loopback"):
        load.Load("10.0.0.1", 80, load.single("/"), concurrency=1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("5m", 300), ("8h", 28800), ("1.5", 1.5), ("250ms", 0.25)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--duration") == seconds


@pytest.mark.parametrize("text", ["", "5 parsecs", "-3s", "0s", "1e9999h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(PlanError, match="--duration"):
        parse_duration(text, "--duration")


def _serve_plan(*argv: str) -> tuple[Service, tuple[float, ...]]:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, default_workloads=("fragment",))
    plan = flags.plan_from(parser.parse_args(list(argv)), default_workloads=("fragment",))
    assert isinstance(plan.work, Service)
    return plan.work, plan.settle


def test_serve_options() -> None:
    opts, settle = _serve_plan("--serve", "srv -p {port}", "--duration", "8h")
    assert (opts.duration, opts.ready, settle, opts.grace) == (28800, "/", (1.0, 5.0), 5.0)
    assert _serve_plan("--serve", "srv {port}", "--duration", "1s", "--idle", "2")[1] == (2.0,)
    with pytest.raises(PlanError, match=re.escape("has no {port}")):
        _serve_plan("--serve", "srv", "--duration", "1s")
    with pytest.raises(PlanError, match="needs --load N, --duration D or --load-cmd"):
        _serve_plan("--serve", "srv {port}")
    with pytest.raises(PlanError, match="the command is empty"):
        _serve_plan("--serve", " ", "--duration", "1s")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "2", "--", "true"], "--threads: for the built-in workloads only"),
        (["--scale", "2", "--serve", "s {port}", "--load", "1"], "--scale: for the built-in"),
        (["--no-purge", "--", "true"], "--no-purge: for the built-in workloads only"),
        (["--settle", "1", "--", "true"], "a command ends by itself"),
        (["--timeout", "9", "--serve", "s {port}", "--load", "1"], "--timeout is for workloads"),
    ],
)
def test_an_option_a_command_or_service_cannot_honour_is_refused(
    argv: list[str], message: str
) -> None:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, default_workloads=("fragment",))
    args = parser.parse_args(argv)
    args.dashdash = True
    with pytest.raises(PlanError, match=re.escape(message)):
        flags.plan_from(args, default_workloads=("fragment",))


def test_the_seed_is_the_plan_s_for_every_kind() -> None:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, default_workloads=("fragment",))
    plan = flags.plan_from(parser.parse_args(["--seed", "7", "--", "true"]), default_workloads=())
    assert plan.seed == 7 and plan.config().seed == 7 and plan.kind == "command"


def test_trim_and_pythonmalloc_must_show_inside_python() -> None:
    trim = parse_spec("name=t,trim=2")
    assert (trim.allocator, trim.trim_every) == ("glibc", 2.0)
    assert builtin("glibc-trim").trim_every == 5.0
    assert setting_problems(trim, [], []) == [
        "t: malloc_trim runs inside Python only; no Python process loaded allocscope's hook"
    ]
    started = Inside(pid=1, pymalloc_blocks=10)
    assert "no malloc_trim ran" in setting_problems(trim, [started], [])[0]
    one = TrimEvent(pid=1, t=1.0, rss_before=8, rss_after=4, returned=4, released=1, took_s=0.1)
    assert setting_problems(trim, [started], [one]) == []
    off = builtin("jemalloc-pymalloc-off")
    assert "still allocates through pymalloc (10 blocks)" in setting_problems(off, [started], [])[0]
    assert setting_problems(off, [Inside(pid=1, pymalloc_blocks=0)], []) == []
    inside = [Inside(pid=3, malloc_conf=(MallocConfKey("narenas", False, "r"),))]
    assert setting_problems(builtin("jemalloc-tuned"), inside, []) == [
        "process 3: MALLOC_CONF narenas not in effect: r"
    ]
    with pytest.raises(VariantError, match="trim= must be greater than 0"):
        parse_spec("name=t,trim=0")


RESPONSES = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"/close": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok",
    b"/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    b"/error": b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
}


def _raw_server() -> tuple[int, object]:
    """A loopback server answering fixed bytes per path, written in split pieces."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    reply = RESPONSES[head.split(b" ")[1]]
                    conn.sendall(reply[:7])  # the client must put pieces together
                    conn.sendall(reply[7:])
                    if b"Connection: close" in reply:
                        return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], listener


@pytest.mark.parametrize("path", [p.decode() for p in RESPONSES])
def test_the_load_client_reads_every_kind_of_response(path: str) -> None:
    port, listener = _raw_server()
    try:
        gen = load.Load("127.0.0.1", port, load.single(path), concurrency=3, procs=1, count=60)
        assert gen.wait_ready()
        gen.go()
        s = gen.result().summary()
        gen.stop()
    finally:
        listener.close()  # type: ignore[attr-defined]
    assert leftover_children() == []  # every load process reaped, no helper left
    assert s.requests == 60, s
    if path == "/error":
        assert s.errors == {"status 503": 60} and s.ok == 0
    else:
        assert s.ok == 60 and s.error_count == 0
    assert s.p50_ms and s.p99_ms and s.max_ms is not None
    assert 0 < s.p50_ms <= s.p99_ms <= s.max_ms + 0.01


def test_proofs_follow_exec_and_survive_an_exit_mid_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from allocscope.bench.kinds.process import proof, watch

    exes = iter(["/bin/sh", "/bin/sh", None, "/usr/bin/python3", "/usr/bin/ruby"])
    answers = iter([
        ProcessProof(5, "/bin/sh", None, None, None, "loader still mapping"),
        ProcessProof(5, "/bin/sh", "jemalloc", "5.3.0", "/lib/je.so"),
        ProcessProof(5, None, None, None, None, "exited while reading"),
        ProcessProof(5, "/usr/bin/ruby", "glibc", "2.36", "/lib/libc.so.6"),
    ])  # fmt: skip
    monkeypatch.setattr(proof, "exe_of", lambda pid: next(exes))
    monkeypatch.setattr(proof, "prove", lambda pid: next(answers))
    sample = tree.ProcSample(5, 1, "sh", 1 << 20, None, 0.0)
    monkeypatch.setattr(tree.Tree, "take", lambda self, t: [sample])
    w = watch.Watch(builtin("jemalloc"), None, None, None, "", 0.0, tree.Tree(5))  # type: ignore[arg-type]
    w.tick()  # first sight: the loader had not mapped the allocator yet
    assert w.proofs[5].allocator is None
    w.tick()  # not sure yet: proved again
    assert w.proofs[5].allocator == "jemalloc"
    w.tick()  # no exe (exiting): not read again
    w.tick()  # exec'd, but gone before it could be read: the proof it had stays
    assert w.proofs[5].allocator == "jemalloc"
    w.tick()  # exec'd into a program that is not on jemalloc: proved again, and it fails
    assert w.proofs[5].allocator == "glibc" and not w.proofs[5].matches("jemalloc")
    assert next(answers, None) is None  # every answer used: no proof read twice for nothing


def test_a_descendant_read_mid_exit_warns_instead_of_failing_the_run(tmp_path: Path) -> None:
    """A `setsid` shim read while it exits (its executable unreadable, its maps half gone)
    or while it starts (only the loader mapped), then gone, says 'unknown': that proves
    nothing, unlike a process that really runs on an unknown allocator (a static binary,
    unknown at a second read too), which still fails the run."""
    from allocscope.bench.kinds.process import watch

    gone = 2**22 + 100  # above any pid_max: never a live process
    root = types.SimpleNamespace(pid=gone)
    w = watch.Watch(builtin("glibc"), root, None, None, str(tmp_path), 0.0, tree.Tree(gone))  # type: ignore[arg-type]
    w.proofs[gone] = ProcessProof(gone, "/bin/bash", "glibc", "2.41", "/lib/libc.so.6")
    w.proofs[gone + 1] = ProcessProof(gone + 1, None, "unknown", None, None)
    w.proofs[gone + 2] = ProcessProof(gone + 2, "/usr/bin/bash", "unknown", None, None)
    read = w.proof()
    assert read.ok and read.allocator == "glibc"
    assert read.warnings == (
        f"process {gone + 1} (?) not read: it ended before its executable could be read",
        f"process {gone + 2} (?, /usr/bin/bash) not told: read once as it started (its "
        "libraries not mapped yet: allocator unknown) and gone before a second read",
    )
    w.proofs[gone + 3] = ProcessProof(gone + 3, "/usr/local/bin/static-go", "unknown", None, None)
    w.retries[gone + 3] = 1  # read again by a later sample: still unknown
    assert not w.proof().ok


def test_a_live_process_read_once_as_unknown_is_read_again_before_judging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from allocscope.bench.kinds.process import proof, watch

    me = os.getpid()  # alive: read again at the end, and this time its allocator is told
    monkeypatch.setattr(proof, "prove", lambda pid: ProcessProof(pid, "/usr/bin/python3",
                        "glibc", "2.36", "/lib/libc.so.6"))  # fmt: skip
    root = types.SimpleNamespace(pid=me)
    w = watch.Watch(builtin("glibc"), root, None, None, str(tmp_path), 0.0, tree.Tree(me))  # type: ignore[arg-type]
    w.proofs[me] = ProcessProof(me, "/usr/bin/python3", "unknown", None, None)
    read = w.proof()
    assert read.ok and read.allocator == "glibc" and w.retries[me] == 1
