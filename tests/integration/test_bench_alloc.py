"""bench_alloc.py as the demo runs it, and the demo's jq comparison on its output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from allocscope import exitcodes
from tests.conftest import JEMALLOC_VERSION, child_env

SCRIPT = Path(__file__).resolve().parents[2] / "bench_alloc.py"
DEMO_KEYS = (
    "time_s", "rss_before_mb", "rss_after_mb", "rss_delta_mb", "ld_preload", "malloc_conf",
    "threads", "rounds",
)  # fmt: skip
JQ = (
    '[{alloc:"glibc",rss:.[0].rss_delta_mb,time:.[0].time_s},'
    '{alloc:"jemalloc",rss:.[1].rss_delta_mb,time:.[1].time_s}]'
)
SMALL = {"BENCH_ITERS": "60000", "BENCH_SLEEP_AFTER": "1"}


def bench(python: str = sys.executable, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(SCRIPT)],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def output(**env: str) -> dict[str, Any]:
    proc = bench(**env)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)  # exactly one JSON object
    return doc


def test_the_demo_comparison_works_unchanged(tmp_path: Path, jemalloc: str) -> None:
    jq = shutil.which("jq")
    assert jq, "jq is installed by scripts/install-system-deps.sh"
    conf = "background_thread:true,metadata_thp:auto,dirty_decay_ms:500,muzzy_decay_ms:500"
    glibc = bench(**SMALL)
    jema = bench(**SMALL, LD_PRELOAD=jemalloc, MALLOC_CONF=conf)
    assert glibc.returncode == 0 and jema.returncode == 0, glibc.stderr + jema.stderr
    (tmp_path / "glibc.json").write_text(glibc.stdout)
    (tmp_path / "jema.json").write_text(jema.stdout)
    proc = subprocess.run(
        [jq, "-s", JQ, "glibc.json", "jema.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rows = json.loads(proc.stdout)
    assert [r["alloc"] for r in rows] == ["glibc", "jemalloc"]
    # jq prints 12.0 as 12: a number either way
    assert all(type(r["rss"]) in (int, float) and r["time"] > 0 for r in rows)
    # fragment is the default: glibc keeps what jemalloc (500 ms decay) gives back
    assert rows[1]["rss"] < rows[0]["rss"] / 2, rows


def test_keys_and_detected_allocator(jemalloc: str) -> None:
    doc = output(**SMALL, LD_PRELOAD=jemalloc, MALLOC_CONF="background_thread:true")
    for key in DEMO_KEYS:
        assert key in doc, key
    assert doc["workload"] == "fragment" and doc["ld_preload"] == jemalloc
    assert (
        doc["allocator"]["name"] == "jemalloc" and doc["allocator"]["version"] == JEMALLOC_VERSION
    )
    assert doc["allocator"]["malloc_conf_not_in_effect"] == []
    assert doc["rss_delta_mb"] == pytest.approx(doc["rss_after_mb"] - doc["rss_before_mb"], 0.02)
    glibc = output(**SMALL)
    assert glibc["ld_preload"] is None and glibc["allocator"]["name"] == "glibc"


@pytest.mark.parametrize("workload", ["seed", "json"])
def test_other_workloads_and_knobs(workload: str) -> None:
    doc = output(
        BENCH_WORKLOAD=workload,
        BENCH_THREADS="2",
        BENCH_ITERS="500",
        BENCH_ROUNDS="1",
        BENCH_SLEEP_AFTER="0",
    )
    assert (doc["workload"], doc["threads"], doc["rounds"]) == (workload, 2, 1)
    assert doc["iters_per_thread"] == 500 and doc["sleep_after_s"] == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BENCH_WORKLOAD": "nope"}, "BENCH_WORKLOAD='nope': choose from"),
        ({"BENCH_THREADS": "0"}, "BENCH_THREADS='0': must be 1 or more"),
        ({"BENCH_ITERS": "-5"}, "BENCH_ITERS='-5': must be 1 or more"),
    ],
)
def test_bad_knobs_exit_3(env: dict[str, str], message: str) -> None:
    proc = bench(**env)
    assert proc.returncode == exitcodes.BAD_INPUT and proc.stdout == ""
    assert proc.stderr.strip() == f"bench_alloc: {message}" or message in proc.stderr


def test_runs_from_a_checkout_with_a_bare_interpreter(tmp_path: Path) -> None:
    """No venv, no install: the script finds allocscope next to it (the image vendors it)."""
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        pytest.fail("no /usr/bin/python3: scripts/install-system-deps.sh installs it")
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    if version.stdout.strip() != "True":
        pytest.fail("/usr/bin/python3 is older than 3.11: allocscope needs 3.11+")
    proc = subprocess.run(
        [python, "-I", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", **SMALL, "BENCH_WORKLOAD": "seed", "BENCH_ITERS": "500"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["workload"] == "seed"
