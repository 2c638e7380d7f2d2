"""The pure parts of the ptrace path: where an interrupted thread resumes, where the
routine may live in a real libc, and when the routine cannot run at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from allocscope.inspect import inject, ptrace
from allocscope.inspect.procinfo import Proc, parse_maps


def regs(rip: int, rax: int, orig_rax: int) -> ptrace.Regs:
    r = ptrace.Regs()
    r[ptrace.RIP], r[ptrace.RAX], r[ptrace.ORIG_RAX] = rip, rax % 2**64, orig_rax % 2**64
    return r


@pytest.mark.parametrize(
    ("rax", "orig", "expected"),
    [
        (-512, 7, (0x1000 - 2, 7)),  # ERESTARTSYS: the same call again
        (-513, 230, (0x1000 - 2, 230)),  # ERESTARTNOINTR
        (-514, 0, (0x1000 - 2, 0)),  # ERESTARTNOHAND
        (-516, 7, (0x1000 - 2, 219)),  # ERESTART_RESTARTBLOCK: restart_syscall
        (-4, 7, (0x1000, 2**64 - 4)),  # EINTR: returned as it is
        (-512, -1, (0x1000, 2**64 - 512)),  # not in a system call: rax is just a value
        (42, -1, (0x1000, 42)),
    ],
)
def test_an_interrupted_system_call_resumes_as_the_kernel_would(
    rax: int, orig: int, expected: tuple[int, int]
) -> None:
    assert inject._resume(regs(0x1000, rax, orig)) == expected


def test_caves_in_this_process_libc_are_unused_and_mapped() -> None:
    proc = Proc(os.getpid())
    maps = parse_maps(proc.text("maps"))
    libc = next(m for m in maps if m.offset == 0 and os.path.basename(m.path).startswith("libc."))
    data = Path(libc.path).read_bytes()
    caves = inject.find_caves(data, libc.start, maps, libc.path)
    assert caves is not None
    code = next(m for m in maps if m.start <= caves.code < m.end)
    assert "x" in code.perms and code.path == libc.path
    assert caves.code + inject.CODE_SIZE <= code.end
    data_map = next(m for m in maps if m.start <= caves.data < m.end)
    assert "w" in data_map.perms and caves.data + inject.DATA_SIZE <= data_map.end
    # What the process holds there is what the file holds there, and the data cave is zero.
    assert ptrace.read_memory(os.getpid(), caves.code, inject.CODE_SIZE) == caves.code_bytes
    assert ptrace.read_memory(os.getpid(), caves.data, inject.DATA_SIZE) == bytes(32)


def test_not_elf_has_no_caves() -> None:
    assert inject.find_caves(b"#!/bin/sh\n" + bytes(100), 0, [], "/x") is None


def test_the_routine_ends_with_its_resume_slot() -> None:
    assert len(inject.STUB) == inject.RESUME_AT
    assert inject.STUB[-1:] == bytes.fromhex("90")  # padding to the slot
    assert inject.STUB[-7:-1] == bytes.fromhex("ff2501000000")  # jmp [rip+1]: the slot


def test_no_xsave_no_ptrace_path(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme de pse sse sse2\n")
    assert "XSAVE" in (ptrace.supported(str(cpuinfo)) or "")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 xsave avx\n")
    assert ptrace.supported(str(cpuinfo)) is None
