"""The attach payload run in this process: it answers in the buffer and leaves sys.modules
exactly as it found it (its own allocscope modules included)."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import allocscope.probe
from allocscope.inspect import payload
from allocscope.inspect.verdict import judge


def run_payload(trim: bool = False) -> dict[str, object]:
    buf = ctypes.create_string_buffer(payload.CODE_AT + 64)
    addr = ctypes.addressof(buf)
    line = payload.line(addr, len(buf), trim)
    assert line.endswith(b"\0")
    exec(line[:-1].decode(), {})
    state, length = (ctypes.c_uint64.from_address(addr + i).value for i in (0, 8))
    assert state == 1
    answer: dict[str, object] = json.loads(buf.raw[16 : 16 + length])
    return answer


def test_answers_and_leaves_sys_modules_as_it_was() -> None:
    before = dict(sys.modules)
    answer = run_payload()
    assert sys.modules == before  # same names, same module objects
    assert sys.modules["allocscope.probe"] is allocscope.probe
    snap, python = answer["snapshot"], answer["python"]
    assert isinstance(snap, dict) and isinstance(python, dict)
    assert snap["schema"] == "allocscope.snapshot/1" and snap["pid"] > 0
    assert python["allocated_blocks"] > 0 and len(python["gc_counts"]) == 3
    verdict = judge(snap, python)
    assert verdict.kind in ("objects", "fragmentation") and verdict.in_use_bytes


def test_trim_reports_after() -> None:
    answer = run_payload(trim=True)
    assert str(answer["trim_action"]).startswith("glibc malloc_trim(0)")
    assert isinstance(answer["after_trim"], dict)


def test_the_remote_exec_script_answers_in_its_directory_and_removes_itself(
    tmp_path: Path,
) -> None:
    before = dict(sys.modules)
    probe = tmp_path / "probe.py"
    probe.write_text(payload.script(str(tmp_path), trim=False))
    exec(probe.read_text(), {})
    assert sys.modules == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answer.json"]  # probe.py gone
    answer = json.loads((tmp_path / "answer.json").read_text())
    assert answer["snapshot"]["pid"] == os.getpid()


def test_an_abandoned_remote_exec_script_tidies_up_and_does_not_run(tmp_path: Path) -> None:
    out = tmp_path / "attach"
    out.mkdir()
    (out / "probe.py").write_text(payload.script(str(out), trim=False))
    (out / "abandoned").touch()
    exec((out / "probe.py").read_text(), {})
    assert not out.exists()
