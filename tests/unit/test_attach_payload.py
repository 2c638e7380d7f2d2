"""The attach payload run in this process: it answers in the buffer and leaves sys.modules
exactly as it found it (its own allocscope modules included)."""

from __future__ import annotations

import ctypes
import json
import sys

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
