"""Intervals and verdicts; the interleaved, seeded order; noise from /proc/stat."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from allocscope.bench import variants, workloads
from allocscope.bench.analysis import noise, stats
from allocscope.bench.kinds.workload import runner
from allocscope.bench.record import Noise
from allocscope.report import table
from tests.unit.test_bench_results import run, sample


def test_a_clear_difference_is_significant_and_its_interval_brackets_the_ratio() -> None:
    base = [208.0, 209.0, 208.5, 208.2, 208.8]
    tuned = [31.4, 31.6, 31.5, 31.3, 31.7]
    c = stats.compare(tuned, base, seed=1)
    assert c is not None and c.verdict == "significant"
    assert c.low <= c.ratio <= c.high < 1


def test_samples_of_one_distribution_are_within_noise() -> None:
    """Never call noise a difference: 100 pairs of samples drawn from one distribution."""
    rng = random.Random(7)
    called = 0
    for i in range(100):
        a = [rng.gauss(0.6, 0.06) for _ in range(5)]
        b = [rng.gauss(0.6, 0.06) for _ in range(5)]
        c = stats.compare(a, b, seed=i, kind="time")
        assert c is not None
        called += c.verdict == "significant"
    # About 1 % measured over 1200 such pairs; 5 runs that happen not to overlap at all
    # (2 in 252 orders) look like a difference to any test.
    assert called <= 3


def test_a_small_but_consistent_difference_is_not_worth_a_verdict() -> None:
    base = [100.0, 100.1, 100.2, 100.1, 100.0]
    other = [
        101.0,
        101.1,
        101.2,
        101.1,
        101.0,
    ]  # 1 %: the intervals do not overlap, but below MIN_EFFECT
    c = stats.compare(other, base, seed=3)
    assert c is not None and (c.low > 1) and c.verdict == "within noise"


def test_too_few_runs_get_no_verdict_and_the_same_seed_gives_the_same_interval() -> None:
    c = stats.compare([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], seed=5)
    assert c is not None and c.verdict == "too few runs"
    again = stats.compare([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], seed=5)
    assert again == c
    assert stats.compare([], [1.0], seed=1) is None
    assert stats.compare([1.0], [0.0], seed=1) is None  # no ratio to a zero baseline
    # kept RSS below the RSS before the work: shown, but a ratio of it would mean nothing
    assert stats.compare([-5.0] * 5, [1.0] * 5, seed=1) is None


def test_median_interval_narrows_with_more_runs() -> None:
    rng = random.Random(2)
    few = stats.median_interval([rng.gauss(10, 1) for _ in range(3)], seed=1)
    many = stats.median_interval([rng.gauss(10, 1) for _ in range(30)], seed=1)
    assert few is not None and many is not None
    assert many.half_width < few.half_width


def test_each_repeat_runs_every_variant_once_in_a_seeded_shuffled_order() -> None:
    chosen = [variants.Variant(n, "glibc") for n in ("a", "b", "c", "d")]
    params = workloads.defaults("seed")

    def order(seed: int) -> list[tuple[int, str]]:
        specs = runner.plan(
            chosen,
            [("seed", params)],
            repeats=6,
            warmup=1,
            settle=(),
            timeout=5,
            rng=random.Random(seed),
        )
        return [(s.repeat, s.variant.name) for s in specs]

    first = order(42)
    assert first == order(42)  # the recorded seed reproduces the order
    for r in range(7):
        assert sorted(n for rep, n in first if rep == r) == ["a", "b", "c", "d"]
    rounds = {tuple(n for rep, n in first if rep == r) for r in range(7)}
    assert len(rounds) > 1  # shuffled, not the same order every time


def test_cpu_steal_is_read_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n")
    got = noise.cpu_stat(str(stat))
    assert got == noise.CpuStat(total=1000, steal=40)
    stat.write_text("garbage\n")
    assert noise.cpu_stat(str(stat)) is None


def test_a_window_counts_other_processes_and_never_ours() -> None:
    """Our own process and our children's sessions are not noise; another process is."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)  # fmt: skip
    try:
        assert noise._ours(os.getpid(), set()) and noise._ours(child.pid, {child.pid})
        assert not noise._ours(child.pid, set()) and not noise._ours(1, {child.pid})
    finally:
        child.kill()
        child.wait()


def test_the_cpu_of_others_in_a_window() -> None:
    start = 1000.0
    before = {1: ("steady", 5.0, 10.0), 2: ("reused", 1.0, 20.0), 3: ("ours", 0.0, 30.0)}
    before[6] = ("idle", 2.0, 10.0)
    window = noise.Window(start, 0.0, None, before)
    now = {
        1: ("steady", 5.5, 10.0),  # ran 0.5 s in the window
        2: ("newer", 0.25, start + 3),  # the pid was reused: all its CPU is in the window
        3: ("ours", 9.0, 30.0),  # never counted
        4: ("born", 0.75, start - 0.4),  # born just after: create_time reads up to 1 s early
        5: ("old", 7.0, start - 50),  # unseen at the start, running long before: unknown
        6: ("idle", 2.0, 10.0),
    }
    got = noise.cpu_of_others(window, now, lambda pid: pid == 3)
    assert sorted(got) == [("born", 0.75), ("newer", 0.25), ("steady", 0.5)]


def test_what_this_means_in_plain_words() -> None:
    r = sample()
    assert table.what_this_means(r, "fragment") == (
        "fragment: too few runs for a verdict (5 of each are needed)"
    )
    r.runs[-1] = run("jemalloc-tuned", 3, 1.01, 30.8)
    r.runs += [run("glibc", 4, 0.95, 141.5), run("glibc", 5, 1.05, 140.5)]
    r.runs += [run("jemalloc-tuned", 4, 0.98, 31.2), run("jemalloc-tuned", 5, 1.03, 30.9)]
    assert table.what_this_means(r, "fragment") == (
        "fragment: jemalloc-tuned keeps 78% less memory than glibc after the work ends "
        "(retained RSS, significant); its CPU time is within noise of glibc's"
    )


def test_busy_runs_are_marked_and_counted_in_the_footer() -> None:
    r = sample()
    noisy = Noise(load1=3.0, steal=0.0, other_cpu=1.2, busy=("cc1 (1.0 CPU)",), marked=True)
    r.runs[1] = replace(r.runs[1], noise=noisy)
    r.runs[2] = replace(r.runs[2], noise=replace(noisy, marked=False))
    assert any("noise: 1 of 2 measured runs were busy" in x for x in table.legend(r))
    assert "| 3/3 (1 busy) |" in table.markdown(r)
