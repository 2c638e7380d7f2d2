"""inspect --attach into real CPython processes: a gunicorn worker, a fragmented glibc heap,
and the refusals (not Python, no ptrace rights, a main thread that never comes back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from allocscope import exitcodes
from allocscope.inspect import attach, process_tree
from allocscope.inspect.errors import Exited
from tests.conftest import as_nobody, run_allocscope
from tests.integration.targets import free_port, running, serves

APP = """\
import json, os, sys, threading

def app(environ, start_response):
    body = {"modules": sorted(sys.modules), "threads": threading.active_count(),
            "fds": sorted(os.listdir("/proc/self/fd"))}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
"""
FRAGMENTED = """\
import dataclasses, sys, time
import allocscope
from allocscope.bench.workloads import fragment
kept = fragment.run(dataclasses.replace(fragment.DEFAULTS, iters=60_000))
del kept
print("ready", flush=True)
while True:  # its own allocscope must be the one in sys.modules, before and after
    if sys.modules.get("allocscope") is not allocscope:
        print("changed", flush=True)
    time.sleep(0.05)
"""


def state(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        found: dict[str, Any] = json.loads(r.read())
    return found


def attach_json(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    proc = run_allocscope("inspect", "--attach", "--json", *args, timeout=120)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, doc, proc.stderr


def test_gunicorn_worker_full_snapshot_and_unchanged(tmp_path: Path, jemalloc: str) -> None:
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
            "--chdir", str(tmp_path), "app:app"]  # fmt: skip
    with running(argv, lambda p: serves(port), LD_PRELOAD=jemalloc) as master:
        worker = process_tree(master.pid)[1]
        before = state(port)
        code, doc, err = attach_json(str(worker))
        assert code == 0, err
        assert doc is not None and doc["schema"] == "allocscope.attach/1"
        inside = doc["attach"]
        snap = inside["snapshot"]
        assert snap["pid"] == worker
        assert snap["allocator"]["name"] == "jemalloc"
        assert snap["allocator"]["confirmed_by"] == "mallctl"
        assert snap["jemalloc"]["stats"]["allocated"] > 0  # mallctl, read inside the worker
        assert snap["fips"]["state"] in ("off", "on", "enforced")
        assert inside["python"]["allocated_blocks"] > 0
        verdict = inside["verdict"]
        assert verdict["kind"] in ("objects", "fragmentation")
        assert verdict["in_use_bytes"] == snap["jemalloc"]["stats"]["allocated"]
        assert inside["trim"] is None  # never by default
        after = state(port)  # it still serves, with the same modules, threads and files
        assert after == before


def test_glibc_fragmentation_told_apart_and_trimmed() -> None:
    argv = [sys.executable, "-c", FRAGMENTED]
    with running(argv, lambda p: p.stdout is not None and p.stdout.readline() == b"ready\n") as t:
        code, doc, err = attach_json("--trim", str(t.pid))
        assert code == 0, err
        assert doc is not None
        inside = doc["attach"]
        v = inside["verdict"]
        assert v["kind"] == "fragmentation", v["sentence"]
        assert v["free_held_bytes"] > 4 * v["in_use_bytes"]
        trim = inside["trim"]
        assert trim["action"].startswith("glibc malloc_trim(0)")
        assert trim["returned_bytes"] > 20 * 2**20, trim  # most of the free memory came back
        assert t.poll() is None
        time.sleep(0.3)  # a few rounds of its check
        assert t.stdout is not None
        os.set_blocking(t.stdout.fileno(), False)
        assert b"changed" not in (t.stdout.read() or b"")


def test_not_a_python_process() -> None:
    with running(["sleep", "60"]) as target:
        code, doc, err = attach_json(str(target.pid))
    assert code == 21 and doc is None
    assert f"process {target.pid} (sleep) is not a CPython" in err


def test_a_sleeping_main_thread_answers_when_its_sleep_ends() -> None:
    code = "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(1)\n"
    argv = [sys.executable, "-c", code]
    with running(argv, lambda p: p.stdout is not None and p.stdout.readline() == b"ready\n") as t:
        code, doc, err = attach_json("--timeout", "5", str(t.pid))
        assert code == 0, err
        assert doc is not None and doc["attach"]["round_trip_seconds"] < 5
        assert t.poll() is None  # its sleep goes on


def test_a_busy_main_thread_answers_at_its_next_bytecode() -> None:
    code = "print('ready', flush=True)\nn = 0\nwhile True:\n    n += sum(range(1000))\n"
    argv = [sys.executable, "-c", code]
    with running(argv, lambda p: p.stdout is not None and p.stdout.readline() == b"ready\n") as t:
        for _ in range(2):
            rc, doc, err = attach_json("--timeout", "10", str(t.pid))
            assert rc == 0, err
            assert doc is not None and doc["attach"]["python"]["allocated_blocks"] > 0
        assert t.poll() is None


def test_a_main_thread_blocked_on_a_lock_times_out_and_survives() -> None:
    code = (
        "import threading\nevent = threading.Event()\nthreading.Timer(8, event.set).start()\n"
        "print('ready', flush=True)\nevent.wait()\nprint('done', flush=True)\n"
    )
    argv = [sys.executable, "-c", code]
    with running(argv, lambda p: p.stdout is not None and p.stdout.readline() == b"ready\n") as t:
        rc, _, err = attach_json("--timeout", "1", str(t.pid))
        assert rc == 23, err
        assert "did not answer within 1 s" in err
        assert t.poll() is None
        assert t.wait(timeout=30) == 0  # it ran the abandoned payload (which frees itself)
        assert t.stdout is not None and t.stdout.read() == b"done\n"
        assert t.stderr is not None and t.stderr.read() == b""


def test_no_ptrace_rights() -> None:
    with running([sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"]) as target:
        proc = as_nobody("inspect", "--attach", str(target.pid))
        assert target.poll() is None
    assert proc.returncode == 22, proc.stderr
    assert "ptrace not permitted" in proc.stderr and "Traceback" not in proc.stderr


def test_memory_read_before_any_call_fails_as_an_inspect_error() -> None:
    """The reads before the first ptrace call (the symbols' code, Py_Version) turn an
    OSError into the error the CLI reports with its own exit code, not an internal one."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: /proc/PID is no more
    with pytest.raises(Exited, match=f"process {gone.pid} exited") as e:
        attach._read(gone.pid, 0x400000, 16)
    assert e.value.exit_code == exitcodes.NOT_INSPECTABLE
