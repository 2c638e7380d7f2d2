"""What a command, a server or the disk can do wrong to `compare -- CMD` / `--serve`
(issue 16, item 5): each ends in a precise message and a documented exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from allocscope import exitcodes
from tests.conftest import child_env, run_allocscope
from tests.integration.targets import free_port
from tests.integration.test_target_command import compare

PY = sys.executable
MISBEHAVING = Path(__file__).resolve().parent / "apps" / "misbehaving.py"
MIB = 1 << 20

# allocscope's own peak RSS, measured from a parent that runs nothing else.
MEASURED = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_gigabytes_of_output_keep_memory_bounded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    loud = "yes out | head -c 700000000; yes err | head -c 700000000 >&2; echo last words"
    argv = [PY, "-m", "allocscope", "compare", "-q", "--no-chart", "-o", str(out)]
    argv += ["-V", "glibc", "--repeats", "1", "--warmup", "0", "--", "bash", "-c", loud]
    proc = subprocess.run(
        [PY, "-c", MEASURED, *argv], env=child_env(), capture_output=True, text=True, timeout=300
    )
    code, maxrss_kib = map(int, proc.stdout.split())
    assert code == exitcodes.OK, proc.stderr
    assert maxrss_kib * 1024 < 200 * MIB  # 1.4 GB went through; a read-back took it all
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["ok"], run["failures"]
    assert run["evidence"]["stdout"].endswith("last words\n")
    assert run["stderr"].endswith("err\nerr\n") and len(run["stderr"]) <= 4000


def test_a_server_on_the_wrong_port_is_named(tmp_path: Path) -> None:
    other = free_port()
    code, text, _ = compare(
        tmp_path, "-V", "glibc", "--serve", f"env PORT={{port}} {PY} {MISBEHAVING} {other} fine",
        "--ready-timeout", "3s", "--duration", "1s",
    )  # fmt: skip
    assert code == exitcodes.RUN_FAILED, text
    assert f"the server listens on 127.0.0.1:{other}, not on port " in text
    assert "put {port} in the --serve command" in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no requests in the file"),
        (b"\x00\xff\xfe binary", "not UTF-8 text"),
        (b'{"path": "/"}\n{"path": \n', "line 2: not JSON"),
        (b'{"path": "/", "verb": "GET"}\n', "unknown keys verb"),
        (None, "past the limit of 64.0 MiB"),
        ("fifo", "a FIFO, not a regular file"),
    ],
)
def test_bad_requests_files(tmp_path: Path, content: bytes | str | None, message: str) -> None:
    path = tmp_path / "requests.jsonl"
    if content == "fifo":
        os.mkfifo(path)
    elif content is None:
        with open(path, "wb") as f:
            f.truncate(65 * MIB)  # sparse
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    code, text, _ = compare(
        tmp_path, "-V", "glibc", "--serve", f"{PY} {MISBEHAVING} {{port}} fine",
        "--duration", "1s", "--requests", str(path),
    )  # fmt: skip
    assert code == exitcodes.BAD_INPUT, text
    assert message in text and "Traceback" not in text


@contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A real small filesystem (CI runs as root, as the mount needs)."""
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_read_only_out_is_refused_before_the_runs(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro", "size=1m") as ro:
        proc = run_allocscope("compare", "-q", "-o", str(ro), "-V", "glibc", "--", "sleep", "30")
    assert proc.returncode == exitcodes.BAD_INPUT
    assert f"cannot write {ro}: Read-only file system" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_leaves_no_half_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "size=256k") as full:
        out = full / "out"
        out.mkdir()
        with open(full / "filler", "wb") as f:  # leave a few KiB: results need more
            f.write(b"x" * (256 * 1024 - 4096))
        proc = run_allocscope(
            "compare", "-q", "--no-chart", "-o", str(out), "-V", "glibc",
            "--repeats", "1", "--warmup", "0", "--", "sleep", "0.3",
        )  # fmt: skip
        left = sorted(os.listdir(out))
        results = json.loads((out / "results.json").read_text()) if left else None
    assert proc.returncode == exitcodes.BAD_INPUT, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert left in ([], ["results.json"]), left  # no half file, no temporary file left
    assert results is None or results["runs"]  # whole, if written
