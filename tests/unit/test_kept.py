"""A child's output is kept bounded: head and tail, and the count of what lies between."""

from __future__ import annotations

import subprocess

from allocscope.bench.kinds.process.kept import Kept

SCRIPT = "printf HEAD; head -c {n} /dev/zero | tr '\\0' x; printf TAIL"


def run(n: int, keep: int) -> Kept:
    out = Kept(keep)
    try:
        proc = subprocess.Popen(["bash", "-c", SCRIPT.format(n=n)], stdout=out.fd)
    finally:
        out.started()
    assert proc.wait() == 0
    out.close(10)
    return out


def test_small_output_is_kept_whole() -> None:
    out = run(10, keep=100)
    assert out.text() == "HEAD" + "x" * 10 + "TAIL" and out.total == 18


def test_large_output_keeps_both_ends_and_counts_the_rest() -> None:
    n = 50_000_000
    out = run(n, keep=1000)
    text = out.text()
    assert out.total == n + 8
    assert text.startswith("HEAD" + "x" * 996) and text.endswith("x" * 996 + "TAIL")
    assert f"[... {n + 8 - 2000} bytes of output not kept ...]" in text
    assert len(text) < 2100
