"""Verdicts a user can act on (issue 17): a floor under memory verdicts, no ratio on a base
near zero, a negative kept RSS in words, one run said plainly, and the ratio of the
measure the verdict judges (CPU time for commands)."""

from __future__ import annotations

from dataclasses import replace

from allocscope.bench.analysis import stats
from allocscope.bench.analysis.stats import MEMORY_FLOOR_BYTES
from allocscope.bench.evidence import Evidence
from allocscope.bench.record import RunRecord
from allocscope.bench.results import MB, Config, Host, Results, VariantInfo
from allocscope.report import table
from tests.unit.test_bench_results import run


def runs_of(
    variant: str, retained: list[float], before: float = 20.0, **extra: float
) -> list[RunRecord]:
    out = []
    for i, r in enumerate(retained, 1):
        base = run(variant, i, 1.0 + i / 100, r)
        metrics = {**base.metrics, "rss_before": before * MB, **extra}
        out.append(replace(base, metrics=metrics))
    return out


def results(runs: list[RunRecord], kind: str = "workload") -> Results:
    return Results(
        created="2026-01-01T00:00:00Z",
        host=Host(),
        config=Config(settle_s=(2.0,)),
        variants=[VariantInfo("glibc", "glibc"), VariantInfo("jemalloc", "jemalloc")],
        runs=[replace(r, kind=kind) for r in runs],
    )


def test_a_consistent_difference_under_the_floor_is_never_significant() -> None:
    # kept 0.4 against 0.7 MiB above a 20 MiB interpreter: a 0.57x ratio of nothing
    base = [0.70, 0.71, 0.69, 0.70, 0.72]
    other = [0.40, 0.41, 0.39, 0.40, 0.42]
    free = stats.compare(other, base, seed=1)
    assert free is not None and free.verdict == "significant"  # without a floor it would be
    c = stats.compare([v * MB for v in other], [v * MB for v in base], seed=1, floor=MB)
    assert c is not None and c.verdict == "below floor" and c.short == "<floor"
    assert not c.ratio_meaningful  # a base of 0.7 MiB is under a 1 MiB floor
    # the same runs 10x larger are a real, decidable difference
    big = stats.compare([v * 10 * MB for v in other], [v * 10 * MB for v in base], seed=1, floor=MB)
    assert big is not None and big.verdict == "significant" and big.ratio_meaningful


def test_kept_rss_is_judged_against_the_floor_of_the_process_it_sits_in() -> None:
    # retained 20.4 MiB against 20.7 MiB, before 20 MiB: kept 0.4 against 0.7
    r = results(
        runs_of("glibc", [20.70, 20.71, 20.69, 20.70, 20.72])
        + runs_of("jemalloc", [20.40, 20.41, 20.39, 20.40, 20.42])
    )
    assert r.memory_floor("fragment", "rss_kept") == MEMORY_FLOOR_BYTES
    c = r.comparison("fragment", "jemalloc", "rss_kept")
    assert c is not None and c.verdict == "below floor"
    md = table.markdown(r)
    # no ratio on a 0.7 MiB base: the difference, in MiB, and no "sig" anywhere
    assert "-0.3 MiB <floor" in md and "sig" not in md.split("_")[0]
    # a 3 % floor of a large process: 600 MiB retained -> 18 MiB
    big = results(runs_of("glibc", [600.0] * 5, before=20) + runs_of("jemalloc", [590.0] * 5))
    assert big.memory_floor("fragment", "rss_kept") == 0.03 * 600 * MB


def test_a_negative_kept_rss_is_explained_in_words() -> None:
    r = results(
        runs_of("glibc", [30.0, 30.1, 30.2, 30.0, 30.1])
        + runs_of("jemalloc", [15.5, 15.4, 15.6, 15.5, 15.5])
    )
    md = table.markdown(r)
    assert "-4.5 (below start)" in md
    assert (
        "jemalloc: kept -4.5 MiB: below its pre-work RSS: the allocator returned memory it "
        "held before the work (nothing the work allocated is kept)"
    ) in md


def command_runs(variant: str, n: int, cpu: float, wall: float, peak: float) -> list[RunRecord]:
    return [
        replace(
            run(variant, i, wall, peak),
            workload="cmd",
            metrics={
                "cpu_s": cpu + i / 1000,
                "work_s": wall + i / 1000,
                "rss_peak": peak * MB,
                "rss_end": peak * MB,
                "pss_peak": peak * MB,
            },
        )
        for i in range(1, n + 1)
    ]


def test_one_run_each_says_so_instead_of_a_zero_width_interval() -> None:
    r = results(
        command_runs("glibc", 1, 2.0, 2.28, 300) + command_runs("jemalloc", 1, 1.6, 2.07, 200),
        kind="command",
    )
    (t,) = table.tables(r)
    cells = " ".join(t.rows[1])
    assert "one run" in cells and "[" not in cells  # no "2.42x [2.42-2.42]"
    assert t.meaning == ["one run: no interval, no verdict (run each variant 5 times: --repeats 5)"]


def test_a_command_table_shows_the_cpu_ratio_its_footer_judges_and_means_it_in_words() -> None:
    r = results(
        command_runs("glibc", 5, 2.0, 2.28, 300) + command_runs("jemalloc", 5, 1.6, 2.07, 200),
        kind="command",
    )
    (t,) = table.tables(r)
    header = t.header
    # the ratio column follows cpu s, and wall s has none
    assert header[header.index("cpu s") + 1] == "xglibc"
    assert "xglibc" not in header[header.index("wall s") + 1 : header.index("wall s") + 2]
    row = dict(zip(header, t.rows[1], strict=False))
    assert row["xglibc"].startswith("0.80x")  # CPU 1.6/2.0, not wall 2.07/2.28 (0.91x)
    assert t.meaning == [
        "jemalloc against glibc: peak memory (RSS of the whole tree) 33% less "
        "(significant), CPU time 20% less (significant)"
    ]


def test_the_same_note_of_every_run_is_said_once() -> None:
    note = Evidence(
        tree={}, warnings=("jemalloc background_thread lost at fork in 2 processes: restored",)
    )
    runs = [replace(r, evidence=note) for r in command_runs("jemalloc", 3, 1.6, 2.0, 200)]
    r = results(command_runs("glibc", 3, 2.0, 2.2, 300) + runs, kind="command")
    (t,) = table.tables(r)
    assert t.notes == [
        "NOTE jemalloc runs 1, 2, 3: jemalloc background_thread lost at fork in 2 processes: "
        "restored"
    ]
