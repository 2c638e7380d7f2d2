"""allocscope compare, bench and report as a user runs them: files, tables, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from allocscope import exitcodes
from allocscope.bench.results import load
from tests.conftest import child_env, run_allocscope

# Small enough for tests; the default scale is for people.
QUICK = ("--scale", "0.05", "--repeats", "2", "--warmup", "1", "--settle", "0.2", "-q")


def test_compare_writes_results_table_and_charts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_allocscope("compare", "-w", "fragment", *QUICK, "--out", str(out), timeout=180)
    assert proc.returncode == exitcodes.OK, proc.stderr
    for name in ("results.json", "report.md", "chart.png", "chart.svg"):
        assert (out / name).stat().st_size > 0, name
    results = load(str(out / "results.json"))
    names = [v.name for v in results.variants]
    assert names == [
        "glibc", "glibc-arena2", "jemalloc-demo", "jemalloc-tuned", "tcmalloc", "mimalloc"
    ]  # fmt: skip
    for name in names:
        assert name in proc.stdout  # every variant has a row in the table
    measured = [r for r in results.runs if r.repeat > 0]
    assert len(measured) == 12 and all(r.counts for r in measured)
    expected = {v.name: v.allocator for v in results.variants}
    for r in results.runs:  # every run carries the proof of its allocator
        assert r.proof is not None and r.proof.allocator == expected[r.variant]
    assert results.host.thp_enabled and results.host.kernel
    assert results.host.libraries  # versions of what the children ran on


def test_report_renders_a_results_file_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    made = run_allocscope(
        "bench", "-V", "jemalloc-tuned", *QUICK, "--no-chart", "--out", str(out), timeout=120
    )
    assert made.returncode == exitcodes.OK, made.stderr
    assert not (out / "chart.png").exists()
    md = run_allocscope("report", str(out / "results.json"), "--markdown")
    assert md.returncode == exitcodes.OK, md.stderr
    assert md.stdout.startswith("### fragment (threads 4") and "| jemalloc-tuned |" in md.stdout
    drawn = run_allocscope("report", str(out / "results.json"), "--out", str(tmp_path / "re"))
    assert drawn.returncode == exitcodes.OK, drawn.stderr
    assert (tmp_path / "re" / "chart.svg").exists() and (tmp_path / "re" / "chart.png").exists()
    assert "jemalloc-tuned" in drawn.stdout


def test_a_missing_library_is_skipped_and_reported(tmp_path: Path) -> None:
    empty = tmp_path / "lib"
    empty.mkdir()
    out = str(tmp_path / "o")
    args = ("--lib-dir", str(empty), "-w", "seed", *QUICK, "--no-chart", "--out", out)
    proc = run_allocscope("compare", "-V", "glibc", "-V", "tcmalloc", *args)
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "skipping tcmalloc: libtcmalloc_minimal.so.4" in proc.stderr
    assert "unavailable: tcmalloc" in proc.stdout
    results = load(str(tmp_path / "o" / "results.json"))
    assert {r.variant for r in results.runs} == {"glibc"}  # never silently run on glibc
    alone = run_allocscope("bench", "-V", "tcmalloc", *args)
    assert alone.returncode == exitcodes.BAD_INPUT
    assert "no variant can run here" in alone.stderr


def test_one_failing_variant_does_not_spoil_the_others(tmp_path: Path) -> None:
    bad = "name=je-bad,lib=jemalloc,env=MALLOC_CONF=bogus_key:1"
    proc = run_allocscope(
        "compare", "-V", "glibc", "-V", bad, "-w", "seed", *QUICK, "--no-chart",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "FAILED je-bad run 1" in proc.stdout and "Invalid conf pair: bogus_key:1" in proc.stdout
    results = load(str(tmp_path / "results.json"))
    assert all(r.ok for r in results.runs if r.variant == "glibc")
    assert not any(r.ok for r in results.runs if r.variant == "je-bad")


def test_no_run_proving_itself_is_exit_4(tmp_path: Path) -> None:
    bad = "name=je-bad,lib=jemalloc,env=MALLOC_CONF=bogus_key:1"
    proc = run_allocscope("bench", "-V", bad, "-w", "seed", *QUICK, "--out", str(tmp_path))
    assert proc.returncode == exitcodes.RUN_FAILED
    assert "no run proved its allocator" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-V", "nosuch"], "unknown variant 'nosuch'"),
        (["-w", "nosuch"], "unknown workload 'nosuch'"),
        (["--scale", "0"], "--scale must be a number greater than 0, not 0"),
        (["--scale", "-2"], "--scale must be a number greater than 0, not -2"),
        (["-V", "name=x,lib=/etc/hostname"], "cannot be preloaded: not an ELF file"),
        (["-V", "name=x,lib=/no/such.so"], "cannot be preloaded: no such file"),
        (["--variants-file", "/no/such.toml"], "No such file"),
        (["--out", "/dev/null/run"], "cannot write /dev/null/run: Not a directory"),
    ],
)
def test_bad_input_is_exit_3_with_a_clear_message(args: list[str], message: str) -> None:
    for command in ("compare", "bench"):
        proc = run_allocscope(command, *args)
        assert proc.returncode == exitcodes.BAD_INPUT, (command, proc.stderr)
        assert f"allocscope {command}: " in proc.stderr and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_bench_is_one_variant_on_one_workload() -> None:
    proc = run_allocscope("bench", "-V", "glibc", "-V", "jemalloc-tuned")
    assert proc.returncode == exitcodes.BAD_INPUT
    assert "use allocscope compare for more" in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": "allocscope.results", "version": 7, "runs": []}', "unknown schema version 7"),
        ('{"schema": "allocscope.results", "version": 1, "runs": [', "truncated JSON"),
        ("not json at all", "not valid JSON"),
    ],
)
def test_report_refuses_unreadable_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    proc = run_allocscope("report", str(path))
    assert proc.returncode == exitcodes.BAD_INPUT
    assert proc.stderr.startswith(f"allocscope report: {path}: ") and message in proc.stderr


def test_report_of_a_missing_file() -> None:
    proc = run_allocscope("report", "/no/such/results.json")
    assert proc.returncode == exitcodes.BAD_INPUT and "No such file" in proc.stderr


def test_report_reads_demo_output(tmp_path: Path) -> None:
    glibc = {"time_s": 1.0, "rss_before_mb": 20, "rss_after_mb": 300, "rss_delta_mb": 280}
    jema = {**glibc, "rss_after_mb": 30, "rss_delta_mb": 10, "allocator": {"name": "jemalloc"}}
    (tmp_path / "glibc.json").write_text(json.dumps(glibc))
    (tmp_path / "jema.json").write_text(json.dumps(jema))
    proc = run_allocscope(
        "report", str(tmp_path / "glibc.json"), str(tmp_path / "jema.json"), "--markdown"
    )
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "| jemalloc |" in proc.stdout and "0.10x" in proc.stdout  # 30 MB / 300 MB
    assert "version-0 file" in proc.stdout
    unwritable = run_allocscope("report", str(tmp_path / "glibc.json"), "--out", "/dev/null/r")
    assert unwritable.returncode == exitcodes.BAD_INPUT
    assert unwritable.stderr == "allocscope report: cannot write /dev/null/r: Not a directory\n"


# rich and matplotlib are absent in the runtime image: a child without them.
WITHOUT_EXTRAS = """
import sys
sys.modules["rich"] = None  # import rich -> ImportError, as if not installed
sys.modules["matplotlib"] = None
from allocscope.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_report_without_rich_or_matplotlib(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"time_s": 1.0, "rss_before_mb": 20, "rss_after_mb": 30}))
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, "report", str(results), "--out", str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "variant" in proc.stdout and "glibc" in proc.stdout  # the plain-text table
    assert "charts need matplotlib" in proc.stderr
    assert (tmp_path / "report.md").exists() and not (tmp_path / "chart.png").exists()


def test_the_cli_loads_without_the_report_extras() -> None:
    code = "import sys; from allocscope.cli import build_parser; build_parser(); " + (
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'matplotlib')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
