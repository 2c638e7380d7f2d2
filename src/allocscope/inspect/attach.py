"""``inspect --attach``: run allocscope's probe inside a running CPython, then judge.

Two ways in. A CPython 3.14 target reached from a CPython 3.14 allocscope gets the probe
through ``sys.remote_exec`` (PEP 768, any architecture, no register handling of ours).
Any other CPython 3 on x86-64 Linux: call, in its main thread (``inject``: each call
runs untraced and restores the thread itself), libc's ``mmap`` for a buffer, write the
payload there, and ``Py_AddPendingCall(PyRun_SimpleString, payload)``. When the thread
was waiting in the kernel without the GIL (select, poll, sleep, read, accept: a server's
idle main thread), it also runs ``PyGILState_Ensure``, ``Py_MakePendingCalls``,
``PyGILState_Release`` at once; otherwise the interpreter runs the pending call at its
next bytecode boundary. Either way it runs in the main thread with the GIL, writes its
JSON answer into the buffer and removes everything it imported. We poll the buffer
through /proc/PID/mem, then ``munmap`` it. Past ``--timeout`` (a main thread blocked in a
lock, or the GIL held elsewhere) the caller marks the buffer abandoned and leaves: the
payload, when it finally runs, frees it itself.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from allocscope.inspect import inject, payload, ptrace, remote
from allocscope.inspect.errors import AttachDenied, AttachTimeout, AttachUnsupported, Exited
from allocscope.inspect.procinfo import Mapping, Proc, parse_maps
from allocscope.inspect.verdict import Verdict, judge
from allocscope.probe import elf

SCHEMA = "allocscope.attach/1"
MECHANISM = (
    "mmap + Py_AddPendingCall(PyRun_SimpleString) in the main thread, "
    "each call run untraced by a routine that restores the thread"
)
REMOTE_MECHANISM = "sys.remote_exec (PEP 768): the target's interpreter runs the probe"
Path = Literal["ptrace", "remote_exec"]
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
    path: Path  # how the probe got in: sys.remote_exec (PEP 768) or our ptrace calls
    mechanism: str
    round_trip_seconds: float
    python: dict[str, Any]
    snapshot: dict[str, Any]  # allocscope.snapshot/1, taken inside the target
    verdict: Verdict
    trim: Trim | None


def _objects(proc: Proc, maps: list[Mapping], like: str) -> Iterator[tuple[Mapping, bytes]]:
    """The executable and the mapped objects whose file name contains ``like``, read."""
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
                yield m, f.read()
        except OSError:
            continue


def _symbols(
    proc: Proc, maps: list[Mapping], names: tuple[str, ...], like: str, optional: str = ""
) -> tuple[dict[str, int], inject.Caves | None] | None:
    """Run-time addresses of ``names`` (and ``optional`` when defined) from the first
    mapped object defining all of them, and that object's caves."""
    for m, data in _objects(proc, maps, like):
        found = elf.defined_symbols(data, (*names, optional) if optional else names)
        if len(set(names) - set(found)):
            continue
        bias = 0 if data[16:18] == b"\x02\x00" else m.start  # ET_EXEC: absolute addresses
        addresses = {n: bias + v for n, v in found.items()}
        for name, at in addresses.items():  # the code there must be the file's: same object
            expected = elf.bytes_at(data, found[name], 16)
            if _read(proc.pid, at, 16) != expected:
                raise AttachUnsupported(f"{name} in {m.path} does not match the process's memory")
        return addresses, inject.find_caves(data, m.start, maps, m.path)
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
    proc = Proc(pid)
    try:
        maps = parse_maps(proc.text("maps"))
    except PermissionError as e:
        raise AttachDenied(
            f"ptrace not permitted on process {pid}: its maps are unreadable "
            "(needs root or CAP_SYS_PTRACE)"
        ) from e
    python = _symbols(proc, maps, _PYTHON, "libpython", optional="Py_Version")
    if python is None:
        raise AttachUnsupported(f"process {pid} ({proc.stat.command}) is not a CPython")
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    no_remote = remote.available(_version(pid, python[0]))
    if no_remote is None:
        try:
            answer = remote.run(proc, trim, deadline, timeout)
        except remote.Refused as e:  # nothing sent: ptrace may still reach it
            no_remote = str(e)
        else:
            return _report(pid, "remote_exec", REMOTE_MECHANISM, started, answer)
    why = ptrace.supported()
    if why:
        raise AttachUnsupported(f"{why}, and no sys.remote_exec: {no_remote}")
    libc = _symbols(proc, maps, ("mmap", "munmap", "gnu_get_libc_version"), "libc")
    if libc is None:
        raise AttachUnsupported(f"process {pid} has no glibc mapped to call mmap with")
    caves = libc[1] or python[1]
    if caves is None:
        raise AttachUnsupported(f"process {pid}: neither libc nor libpython has room to run from")
    calls = inject.Injector(pid, caves, deadline)
    try:
        answer = _run(calls, python[0], libc[0], trim, timeout)
    except ptrace.PtraceError as e:
        raise _refused(pid, e) from e
    except (ptrace.StopTimeout, inject.CallPending) as e:
        raise AttachTimeout(f"process {pid}: {e} (within --timeout {timeout:g} s)") from e
    except ptrace.GroupStopped as e:
        raise AttachUnsupported(f"{e}: continue it (SIGCONT) to attach") from e
    except inject.Busy as e:
        raise AttachDenied(str(e)) from e
    except OSError as e:  # its memory could not be read or written (it exited, say)
        raise AttachUnsupported(f"attach to process {pid} failed: {e}") from e
    return _report(pid, "ptrace", MECHANISM, started, answer)


def _read(pid: int, address: int, size: int) -> bytes:
    """The target's memory before any call is made: an OSError here (it exited, its memory
    is not ours to read) becomes the inspect error the CLI reports with its exit code."""
    try:
        return ptrace.read_memory(pid, address, size)
    except FileNotFoundError as e:
        raise Exited(f"process {pid} exited while being read") from e
    except PermissionError as e:
        raise AttachDenied(f"process {pid}: its memory cannot be read ({e.strerror})") from e
    except OSError as e:
        raise AttachUnsupported(f"process {pid}: its memory cannot be read ({e})") from e


def _version(pid: int, python: dict[str, int]) -> tuple[int, int] | None:
    """The target's CPython (major, minor), from its Py_Version (3.11 and later)."""
    if "Py_Version" not in python:
        return None
    hexversion = int.from_bytes(_read(pid, python["Py_Version"], 4), "little")
    return hexversion >> 24, hexversion >> 16 & 0xFF


def _report(
    pid: int, path: Path, mechanism: str, started: float, answer: dict[str, Any]
) -> AttachReport:
    if "error" in answer:
        raise AttachUnsupported(f"the probe failed inside process {pid}: {answer['error']}")
    trimmed = _trim(answer)
    return AttachReport(
        schema=SCHEMA,
        pid=pid,
        path=path,
        mechanism=mechanism,
        round_trip_seconds=round(time.perf_counter() - started, 4),
        python=answer["python"],
        snapshot=answer["snapshot"],
        verdict=judge(
            answer["snapshot"], answer["python"], trimmed.returned_bytes if trimmed else None
        ),
        trim=trimmed,
    )


def _refused(pid: int, e: ptrace.PtraceError) -> AttachDenied | AttachUnsupported:
    if e.errno not in (1, 13):  # EPERM, EACCES
        return AttachUnsupported(f"attach to process {pid} failed: {e.strerror}")
    tracer = ptrace.tracer_of(pid)
    if tracer:  # the likeliest cause when we are allowed to trace: say it first
        return AttachDenied(
            f"process {pid} is already traced by process {tracer[0]} ({tracer[1]}): "
            "one tracer at a time; try again when it has let go"
        )
    return AttachDenied(
        f"ptrace not permitted on process {pid}: {e.strerror} "
        "(needs root or CAP_SYS_PTRACE, and Yama ptrace_scope allowing it)"
    )


def _run(
    calls: inject.Injector, python: dict[str, int], libc: dict[str, int], trim: bool,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    """mmap a buffer, queue the payload, run it now if the thread waits, await, munmap."""
    pid = calls.pid
    size = -(-(payload.CODE_AT + 4 * 2**20) // _PAGE) * _PAGE  # room for the payload line
    try:
        addr = calls.call((libc["mmap"], 0, size, _PROT_RW, _MAP_PRIVATE_ANON, -1, 0))
        if addr >= 2**64 - 4096:
            raise AttachUnsupported(f"mmap in process {pid} failed: {os.strerror(-addr % 2**64)}")
        code = payload.line(addr, size, trim)
        if payload.CODE_AT + len(code) > size:
            calls.call((libc["munmap"], addr, size))
            raise AttachUnsupported("the payload does not fit its buffer")
        ptrace.write_memory(pid, addr + payload.CODE_AT, code)
        try:
            queued = calls.call((python["Py_AddPendingCall"], python["PyRun_SimpleString"],
                                 addr + payload.CODE_AT))  # fmt: skip
        except BaseException:  # it may still queue the call: the payload frees the buffer
            ptrace.write_memory(pid, addr, (2).to_bytes(8, "little"))
            raise
        if queued != 0:
            calls.call((libc["munmap"], addr, size))
            raise AttachUnsupported(f"process {pid}: the pending-call queue is full")
        try:
            # Only in a process of one thread: with others, GIL code run there once
            # deadlocked every thread inside the GIL's condition variable (a C loop held
            # the GIL): the pending call then waits for the next bytecode boundary.
            alone = len(os.listdir(f"/proc/{pid}/task")) == 1
            if (
                alone
                and calls.syscall in _WAITING
                and calls.call((python["PyGILState_Check"],)) == 0
            ):
                # Waiting in the kernel without the GIL: the thread runs the pending call
                # now, rather than when its wait ends (a worker's select may last 15 s).
                # It takes the GIL like any thread would, untraced: if another thread holds
                # the GIL past the deadline, we stop waiting and the call runs when it can.
                # Only if it still waits where the check found it: having moved on (into
                # take_gil's condition variable, say), running GIL code in it would
                # re-enter that condition variable and deadlock every thread.
                with contextlib.suppress(inject.Moved):
                    calls.call(
                        (python["PyGILState_Ensure"],), (python["Py_MakePendingCalls"],),
                        (python["PyGILState_Release"], 0), chain=True, at=calls.where,
                    )  # fmt: skip
            answer = _await(pid, addr, calls.deadline, timeout)
        except BaseException:
            ptrace.write_memory(pid, addr, (2).to_bytes(8, "little"))  # it frees the buffer
            raise
        calls.call((libc["munmap"], addr, size))
        return answer
    finally:
        calls.close()


def _await(pid: int, addr: int, deadline: float, timeout: float) -> dict[str, Any]:
    import json

    while True:
        try:
            head = ptrace.read_memory(pid, addr, 16)
        except OSError as e:
            raise AttachUnsupported(f"process {pid} exited before it answered") from e
        state, length = int.from_bytes(head[:8], "little"), int.from_bytes(head[8:], "little")
        if state == 1:
            answer: dict[str, Any] = json.loads(ptrace.read_memory(pid, addr + 16, length))
            return answer
        if time.monotonic() > deadline:
            raise AttachTimeout(
                f"process {pid} did not answer within {timeout:g} s: its main thread has "
                "not reached a bytecode boundary (blocked in C code, e.g. a long sleep or a "
                "lock); it will free the buffer itself when it does"
            )
        time.sleep(0.005)
