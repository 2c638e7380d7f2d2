"""Reports render a results document alone: tables (markdown, text, rich) and charts."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from allocscope.report import bundle, chart, table
from tests.unit.test_bench_results import sample


def test_markdown_table_with_ratios_spread_failures_and_unavailable() -> None:
    md = table.markdown(sample())
    lines = md.splitlines()
    assert lines[0] == "### fragment (threads 4)"
    header = next(line for line in lines if line.startswith("| variant"))
    assert header == (
        "| variant | allocator | runs | peak MiB | xglibc | retained MiB | xglibc | kept MiB "
        "| xglibc | cpu s | xglibc | wall s |"
    )
    glibc = next(line for line in lines if line.startswith("| glibc "))
    tuned = next(line for line in lines if line.startswith("| jemalloc-tuned "))
    assert "| 3/3 |" in glibc and "141.0 ±1%" in glibc and "1.000 ±10%" in glibc
    assert "| 2/3 |" in tuned and "30.5 ±2%" in tuned
    # retained against glibc, with its interval; two runs are too few for a verdict
    assert f"{30.5 / 141:.2f}x [{30 / 142:.2f}-{31 / 140:.2f}] n<5" in tuned
    assert "- FAILED jemalloc-tuned run 3: the loader refused to preload /x.so" in lines
    assert any("unavailable: tcmalloc: libtcmalloc_minimal.so.4 not found" in x for x in lines)
    assert any("retained is RSS 2 s after everything was freed" in x for x in lines)


def test_text_table_needs_no_third_party_modules() -> None:
    text = table.text(sample())
    assert "jemalloc-tuned" in text and "2/3" in text and "FAILED" in text


def test_rich_tables_do_not_interpret_markup() -> None:
    from rich.console import Console

    r = sample()
    r.runs[-1].failures[0] = "[bold]not markup[/bold]"
    out = io.StringIO()
    console = Console(file=out, width=200)
    for t in table.rich_tables(r):
        console.print(t)
    assert "[bold]not markup[/bold]" in out.getvalue()


def test_chart_png_and_svg(tmp_path: Path) -> None:
    paths = chart.write(sample(), str(tmp_path / "chart"))
    assert [Path(p).name for p in paths] == ["chart.png", "chart.svg"]
    png, svg = (Path(p) for p in paths)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "<svg" in svg.read_text()[:1000]


def test_representative_run_is_the_median_by_work_time() -> None:
    runs = sample().counted("fragment", "glibc")
    rep = chart.representative(runs)
    assert rep is not None and rep.metrics["work_s"] == 1.0


def test_bundle_writes_everything(tmp_path: Path) -> None:
    written = bundle.write(sample(), str(tmp_path / "out"))
    names = sorted(Path(p).name for p in written.paths)
    assert names == ["chart.png", "chart.svg", "report.md", "results.json"]
    assert written.problems == []


def test_a_busy_machine_is_called_out() -> None:
    r = sample()
    assert not any("busy" in line for line in table.legend(r))
    r.host = replace(
        r.host, cpus_usable=2, loadavg_before=(2.4, 2.0, 1.5), loadavg_after=(3.0, 2.1, 1.6)
    )
    assert any("busy before this run started (load 2.4 on 2 CPUs)" in x for x in table.legend(r))
