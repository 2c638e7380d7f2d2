"""The demo's flow against the image: bench_alloc.py under glibc and jemalloc, then jq."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.container.dockerlib import DEMO_MALLOC_CONF, SLOW, run_once

pytestmark = [pytest.mark.container, SLOW]

JQ = (
    '[{alloc:"glibc",rss:.[0].rss_delta_mb,time:.[0].time_s},'
    '{alloc:"jemalloc",rss:.[1].rss_delta_mb,time:.[1].time_s}]'
)


def bench(image: str, *env: str) -> str:
    """``docker run --rm --network none --entrypoint /usr/bin/python ... /app/bench_alloc.py``"""
    args = [a for e in env for a in ("-e", e)]
    proc = run_once(
        *args, "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--entrypoint", "/usr/bin/python", image, "/app/bench_alloc.py",
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bench_glibc_then_jemalloc_then_jq(image: str, tmp_path: Path) -> None:
    glibc = tmp_path / "glibc.json"
    jema = tmp_path / "jema.json"
    glibc.write_text(bench(image, "LD_PRELOAD=", "BENCH_THREADS=4"))
    jema.write_text(bench(image, "BENCH_THREADS=4", f"MALLOC_CONF={DEMO_MALLOC_CONF}"))

    g, j = json.loads(glibc.read_text()), json.loads(jema.read_text())
    for doc in (g, j):
        for key in ("time_s", "rss_before_mb", "rss_after_mb", "rss_delta_mb", "ld_preload",
                    "malloc_conf", "threads", "rounds", "allocator"):  # fmt: skip
            assert key in doc, key
        assert doc["threads"] == 4
    assert g["ld_preload"] == "" and g["allocator"]["name"] == "glibc"
    assert j["ld_preload"] == "/usr/lib/libjemalloc.so.2"
    assert j["allocator"]["name"] == "jemalloc" and j["allocator"]["source"] == "LD_PRELOAD"
    assert j["malloc_conf"] == DEMO_MALLOC_CONF
    assert j["allocator"]["malloc_conf_not_in_effect"] == []
    # The demo's point: after the churn glibc keeps far more of the freed memory.
    assert j["rss_delta_mb"] < g["rss_delta_mb"], (g, j)

    jq = shutil.which("jq")
    assert jq, "jq is missing: scripts/install-system-deps.sh installs it"
    out = subprocess.run(
        [jq, "-s", JQ, str(glibc), str(jema)],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    table = json.loads(out)
    assert [row["alloc"] for row in table] == ["glibc", "jemalloc"]
    assert table[0]["rss"] == g["rss_delta_mb"] and table[1]["time"] == j["time_s"]
