"""``inspect --attach``: run allocscope's probe inside a running CPython, then judge.

Mechanism (every CPython 3 on x86-64 Linux, no debugger): seize the main thread with
ptrace, call libc's ``mmap`` in it for a buffer, write the payload there, and call
``Py_AddPendingCall(PyRun_SimpleString, payload)``. When the thread was waiting in the
kernel without the GIL (select, poll, sleep, read, accept: a server's idle main thread),
we run the pending call at once in it (``PyGILState_Ensure``, ``Py_MakePendingCalls``,
``PyGILState_Release``); otherwise the interpreter runs it at its next bytecode boundary.
Either way it runs in the main thread with the GIL, writes its JSON answer into the
buffer and removes everything it imported; registers are restored (the interrupted wait
restarts) and the thread detached. We poll the buffer through /proc/PID/mem, then seize
the thread once more to ``munmap`` it. A main thread blocked in a lock or in C code that
holds the GIL answers only when it returns: past the timeout the caller marks the buffer
abandoned and the payload, when it finally runs, frees it itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from allocscope.inspect import payload, ptrace
from allocscope.inspect.errors import AttachDenied, AttachTimeout, AttachUnsupported
from allocscope.inspect.procinfo import Mapping, Proc, parse_maps
from allocscope.inspect.verdict import Verdict, judge
from allocscope.probe import elf

SCHEMA = "allocscope.attach/1"
MECHANISM = "ptrace: mmap + Py_AddPendingCall(PyRun_SimpleString) in the main thread"
_PYTHON = (
    "Py_AddPendingCall", "PyRun_SimpleString", "Py_MakePendingCalls",
    "PyGILState_Check", "PyGILState_Ensure", "PyGILState_Release",
)  # fmt: skip
# x86-64 system calls a Python main thread waits in with the GIL released (select, poll,
# epoll, sleep, read, accept, wait): there the pending call can be run at once. Not futex
# (a lock: it may be the GIL's or malloc's own) nor memory calls.
_WAITING = frozenset({0, 7, 23, 35, 43, 45, 61, 230, 232, 270, 271, 281, 288, 441})
_PROT_RW, _MAP_PRIVATE_ANON = 3, 0x22
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Trim:
    action: str
    rss_before_bytes: int | None
    rss_after_bytes: int | None
    returned_bytes: int | None
    in_use_after_bytes: int | None
    verdict: Verdict | None = None  # judged again after the trim: what the process holds now


@dataclass(frozen=True)
class AttachReport:
    schema: str
    pid: int
    mechanism: str
    round_trip_seconds: float
    python: dict[str, Any]
    snapshot: dict[str, Any]  # allocscope.snapshot/1, taken inside the target
    verdict: Verdict
    trim: Trim | None


def _symbols(
    proc: Proc, maps: list[Mapping], names: tuple[str, ...], like: str
) -> dict[str, int] | None:
    """Run-time addresses of ``names`` from the first mapped object defining all of them.

    Only the executable and objects whose file name contains ``like`` are read.
    """
    seen: set[str] = set()
    exe = proc.link("exe")
    for m in maps:
        if m.offset != 0 or not m.path.startswith("/") or m.path in seen:
            continue
        if m.path != exe and like not in os.path.basename(m.path):
            continue
        seen.add(m.path)
        try:
            with open(proc.in_root(m.path), "rb") as f:
                data = f.read()
        except OSError:
            continue
        found = elf.defined_symbols(data, names)
        if len(found) < len(names):
            continue
        bias = 0 if data[16:18] == b"\x02\x00" else m.start  # ET_EXEC: absolute addresses
        addresses = {n: bias + v for n, v in found.items()}
        for name, at in addresses.items():  # the code there must be the file's: same object
            expected = elf.bytes_at(data, found[name], 16)
            if ptrace.read_memory(proc.pid, at, 16) != expected:
                raise AttachUnsupported(f"{name} in {m.path} does not match the process's memory")
        return addresses
    return None


def _trim(answer: dict[str, Any]) -> Trim | None:
    if "after_trim" not in answer:
        return None
    before = (answer["snapshot"].get("memory") or {}).get("rss_bytes")
    after = (answer["after_trim"].get("memory") or {}).get("rss_bytes")
    returned = before - after if before is not None and after is not None else None
    verdict = judge(answer["after_trim"], answer["python"])
    return Trim(answer["trim_action"], before, after, returned, verdict.in_use_bytes, verdict)


def attach(pid: int, *, trim: bool = False, timeout: float = 10.0) -> AttachReport:
    """Run the probe inside CPython process ``pid`` and judge leak against fragmentation."""
    why = ptrace.supported()
    if why:
        raise AttachUnsupported(why)
    proc = Proc(pid)
    try:
        maps = parse_maps(proc.text("maps"))
    except PermissionError as e:
        raise AttachDenied(
            f"ptrace not permitted on process {pid}: its maps are unreadable "
            "(needs root or CAP_SYS_PTRACE)"
        ) from e
    python = _symbols(proc, maps, _PYTHON, "libpython")
    if python is None:
        raise AttachUnsupported(f"process {pid} ({proc.stat.command}) is not a CPython")
    libc = _symbols(proc, maps, ("mmap", "munmap", "gnu_get_libc_version"), "libc")
    if libc is None:
        raise AttachUnsupported(f"process {pid} has no glibc mapped to call mmap with")
    started = time.perf_counter()
    size = -(-(payload.CODE_AT + 4 * 2**20) // _PAGE) * _PAGE  # room for the payload line
    try:
        with ptrace.Tracee(pid, timeout=timeout) as thread:
            addr = thread.call(libc["mmap"], 0, size, _PROT_RW, _MAP_PRIVATE_ANON, -1, 0)
            if addr >= 2**64 - 4096:
                raise AttachUnsupported(
                    f"mmap in process {pid} failed: {os.strerror(-addr % 2**64)}"
                )
            code = payload.line(addr, size, trim)
            if payload.CODE_AT + len(code) > size:
                raise AttachUnsupported("the payload does not fit its buffer")
            thread.write(addr + payload.CODE_AT, code)
            if thread.call(python["Py_AddPendingCall"], python["PyRun_SimpleString"],
                           addr + payload.CODE_AT) != 0:  # fmt: skip
                thread.call(libc["munmap"], addr, size)
                raise AttachUnsupported(f"process {pid}: the pending-call queue is full")
            if thread.syscall in _WAITING and thread.call(python["PyGILState_Check"]) == 0:
                # Waiting in the kernel without the GIL: run the pending call now, in this
                # thread, rather than when the wait ends (a worker's select may last 15 s).
                gil = thread.call(python["PyGILState_Ensure"])
                # Holding the GIL now: abandoning the payload midway would leave the GIL
                # taken for good, so it gets all the time it needs (it runs in ~0.2 s).
                thread.timeout = max(timeout, 120.0)
                thread.call(python["Py_MakePendingCalls"])
                thread.call(python["PyGILState_Release"], gil)
    except ptrace.PtraceError as e:
        if e.errno in (1, 13):  # EPERM, EACCES
            raise AttachDenied(
                f"ptrace not permitted on process {pid}: {e.strerror} "
                "(needs root or CAP_SYS_PTRACE, Yama ptrace_scope allowing it, no other tracer)"
            ) from e
        raise AttachUnsupported(f"attach to process {pid} failed: {e.strerror}") from e
    except ptrace.CallTimeout as e:
        raise AttachTimeout(f"process {pid}: {e}") from e
    answer = _await(pid, addr, size, libc["munmap"], timeout - (time.perf_counter() - started))
    elapsed = time.perf_counter() - started
    if "error" in answer:
        raise AttachUnsupported(f"the probe failed inside process {pid}: {answer['error']}")
    trimmed = _trim(answer)
    return AttachReport(
        schema=SCHEMA,
        pid=pid,
        mechanism=MECHANISM,
        round_trip_seconds=round(elapsed, 4),
        python=answer["python"],
        snapshot=answer["snapshot"],
        verdict=judge(
            answer["snapshot"], answer["python"], trimmed.returned_bytes if trimmed else None
        ),
        trim=trimmed,
    )


def _await(pid: int, addr: int, size: int, munmap: int, timeout: float) -> dict[str, Any]:
    import json

    deadline = time.monotonic() + max(timeout, 0.1)
    while True:
        try:
            head = ptrace.read_memory(pid, addr, 16)
        except OSError as e:
            raise AttachUnsupported(f"process {pid} exited before it answered") from e
        state, length = int.from_bytes(head[:8], "little"), int.from_bytes(head[8:], "little")
        if state == 1:
            data = ptrace.read_memory(pid, addr + 16, length)
            with ptrace.Tracee(pid) as thread:
                thread.call(munmap, addr, size)
            answer: dict[str, Any] = json.loads(data)
            return answer
        if time.monotonic() > deadline:
            ptrace.write_memory(pid, addr, (2).to_bytes(8, "little"))
            raise AttachTimeout(
                f"process {pid} did not answer within {timeout:.0f} s: its main thread has "
                "not reached a bytecode boundary (blocked in C code, e.g. a long sleep or a "
                "lock); it will free the buffer itself when it does"
            )
        time.sleep(0.005)
