"""Numbers you can trust, with real children: stop signals, --out, reproducible verdicts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from allocscope import exitcodes
from allocscope.bench.results import load
from tests.conftest import child_env, run_allocscope

SMALL = ("--scale", "0.05", "--warmup", "0", "--settle", "0.2", "--no-chart")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.Error:
            pass
    return left


@pytest.mark.parametrize(
    ("signum", "workload", "wait_for"),
    [
        (signal.SIGTERM, "fragment", "allocscope.bench.worker"),
        (signal.SIGHUP, "fragment", "allocscope.bench.worker"),
        (signal.SIGTERM, "http", "serve"),  # the worker's own server must end too
    ],
)
def test_a_stop_signal_ends_every_child_and_keeps_the_runs(
    tmp_path: Path, signum: int, workload: str, wait_for: str
) -> None:
    out = tmp_path / "run"
    args = ["-V", "glibc", "-w", workload, "--repeats", "40", *SMALL, "--out", str(out)]
    if workload == "http":
        args += ["--iters", "400"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "allocscope", "compare", *args],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[int, psutil.Process] = {}
    try:
        # Wait until a run is done and the next child (and its server) is working.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            kids = _descendants(proc.pid)
            seen.update({k.pid: k for k in kids})
            runs = list(out.glob("*"))  # nothing is written before the end
            assert not runs or runs == [out]
            if any(wait_for in " ".join(k.cmdline()) for k in kids if k.is_running()) and len(
                seen
            ) > (3 if workload == "http" else 1):
                break
            time.sleep(0.05)
        else:
            pytest.fail("compare never started its children")
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = _alive(list(seen.values()))
    for p in left:  # leave the machine clean whatever the verdict
        p.kill()
    assert not left, f"children still running after {signal.Signals(signum).name}: {left}"
    assert proc.returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    assert f"allocscope compare: stopped by {name}: the runs done so far are written" in stderr
    assert "Traceback" not in stderr
    results = load(str(out / "results.json"))
    assert results.session["interrupted"] == name
    assert any(r.counts for r in results.runs)  # what was measured before the signal


def test_out_refuses_an_existing_results_directory_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["-V", "glibc", "-w", "seed", "--repeats", "1", *SMALL, "-q", "--out", str(out)]
    first = run_allocscope("bench", *args, timeout=120)
    assert first.returncode == exitcodes.OK, first.stderr
    before = (out / "results.json").read_bytes()
    again = run_allocscope("bench", *args, timeout=120)
    assert again.returncode == exitcodes.BAD_INPUT
    assert again.stderr == (
        f"allocscope bench: {out} already holds results.json, report.md: not overwritten "
        "(use --force to overwrite, or choose another --out)\n"
    )
    assert (out / "results.json").read_bytes() == before
    forced = run_allocscope("bench", *args, "--force", timeout=120)
    assert forced.returncode == exitcodes.OK, forced.stderr
    assert (out / "results.json").read_bytes() != before
    report = run_allocscope("report", str(out / "results.json"), "--out", str(out))
    assert report.returncode == exitcodes.BAD_INPUT and "already holds report.md" in report.stderr


def _verdicts(path: Path) -> dict[tuple[str, str], str]:
    doc = json.loads((path / "results.json").read_text())
    return {(c["variant"], c["metric"]): c["verdict"] for c in doc["comparisons"]}


def test_two_runs_agree_on_every_significant_memory_verdict_and_glibc_equals_itself(
    tmp_path: Path,
) -> None:
    """Reproducibility: two compares one after the other agree on every *significant*
    verdict for retained and peak RSS on fragment; glibc under another name is never
    called different from glibc, in memory or in time. Small, to stay cheap in CI."""
    variants = ["-V", "glibc", "-V", "name=glibc-again", "-V", "jemalloc-tuned"]
    common = [*variants, "-w", "fragment", "--scale", "0.1", "--settle", "0.3"]
    common += ["--warmup", "1", "--repeats", "6", "--no-chart", "-q"]
    verdicts = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        proc = run_allocscope("compare", *common, "--out", str(out), timeout=240)
        assert proc.returncode == exitcodes.OK, proc.stderr
        verdicts.append(_verdicts(out))
        for metric in ("rss_retained", "rss_peak", "cpu_s"):
            assert verdicts[-1][("glibc-again", metric)] == "within noise", (metric, proc.stdout)
        assert "what this means: fragment: jemalloc-tuned keeps" in proc.stdout
    first, second = verdicts
    for key in [(v, m) for v, m in first if m in ("rss_retained", "rss_peak")]:
        if "significant" in (first[key], second[key]):
            assert first[key] == second[key], (key, first, second)
    assert first[("jemalloc-tuned", "rss_retained")] == "significant"


def test_repeats_auto_says_why_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "auto"
    proc = run_allocscope(
        "compare", "-V", "glibc", "-V", "jemalloc-tuned", "-w", "seed", "--repeats", "auto",
        "--budget", "20", "--target", "50", *SMALL, "-q", "--out", str(out), timeout=180,
    )  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    results = load(str(out / "results.json"))
    why = results.session["repeats_auto"]["seed"]
    assert why.startswith(("narrow", "budget spent", "max repeats")), why
    assert f"--repeats auto, seed: stopped: {why}" in proc.stdout
    assert results.config["repeats_auto"] == {"target": 0.5, "budget_s": 20.0, "max": 20}
    assert len({r.repeat for r in results.runs}) >= 5


def test_the_order_of_each_repeat_is_recorded_and_seeded(tmp_path: Path) -> None:
    out = tmp_path / "seeded"
    proc = run_allocscope(
        "compare", "-V", "glibc", "-V", "glibc-arena2", "-V", "jemalloc-tuned", "-w", "seed",
        "--repeats", "3", "--seed", "12345", *SMALL, "-q", "--out", str(out), timeout=180,
    )  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    results = load(str(out / "results.json"))
    assert results.session["seed"] == 12345 and results.config["seed"] == 12345
    for r in range(1, 4):
        orders = sorted(x.order for x in results.runs if x.repeat == r)
        assert orders == [0, 1, 2]
    assert all(x.noise is not None for x in results.runs)
    assert os.path.exists(out / "report.md")
