"""Call C functions in another process's main thread without ever holding it while they run.

Each call seizes the thread for a few system calls only: read its registers, write a
frame below its stack's red zone, point it at a small routine of ours, and detach. The
thread, no longer traced, runs the routine itself: up to three calls, then it puts every
register back (general, flags, x87/SSE/AVX through XSAVE) and jumps to where it was, a
system call it was waiting in restarting as the kernel would have restarted it. Done,
it writes the call's token beside its result, which we read through /proc/PID/mem.

So there is no moment at which losing allocscope (SIGKILL, a crash) leaves the thread
unable to go on: before the registers are set it resumes as it was, after it runs the
routine to its end. The routine lives in a code cave: the unused tail of the last page
of libc's executable segment (mapped, executable, never reached by libc's own code),
written through /proc/PID/mem, which copies that page for this process only. The result
lives in libc's data cave, the tail of the page after the end of its .bss. Both are put
back when the attach ends.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import struct
import time
from dataclasses import dataclass

from allocscope.inspect import ptrace
from allocscope.inspect.procinfo import Mapping

# The routine, assembled from this source (GNU as, Intel syntax) with
# `as stub.s -o stub.o && objcopy -O binary -j .text stub.o stub.bin`:
#   Entered with rsp = the frame F (64-aligned), rbx = the data cave D. Frame (bytes):
#   0x000 three calls of 8 qwords: fn (0 ends), a0..a5, flags (bit 0: a0 = 1st result)
#   0x0C0 r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi (to resume with)
#   0x138 rflags, 0x140 rsp, 0x148 the call's token, 0x200 the XSAVE area (0xC00)
#       mov r12, rsp; mov eax, 0xe7; xor edx, edx; xsave64 [r12+0x200]
#       cld; fninit; push 0x1f80; ldmxcsr [rsp]; pop rax   (the state a C call expects)
#       xor r13d, r13d; mov r14, r12; mov r15d, 3
#   1:  mov r11, [r14]; test r11, r11; jz 3f
#       mov rdi..r9, [r14+8..48]; test qword ptr [r14+56], 1; jz 2f; mov rdi, r13
#   2:  xor eax, eax; call r11; cmp r14, r12; cmove r13, rax; mov [rbx+8], rax
#       add r14, 64; dec r15d; jnz 1b
#   3:  mov eax, 0xe7; xor edx, edx; xrstor64 [r12+0x200]
#       mov rax, [r12+0x148]; mov [rbx+16], rax          (done: the token)
#       mov rsp, r12; mov r15..rdi, [rsp+0xC0..0x130]
#       push qword ptr [rsp+0x138]; popfq; mov rsp, [rsp+0x140]
#       jmp qword ptr [rip+resume]                        (resume: .quad, at 0x120)
STUB = bytes.fromhex(
    "4989e4b8e700000031d2490faea42400020000fcdbe368801f00000fae1424584531ed4d89e641"
    "bf030000004d8b1e4d85db743e498b7e08498b7610498b5618498b4e204d8b46284d8b4e3049f7"
    "46380100000074034c89ef31c041ffd34d39e64c0f44e8488943084983c64041ffcf75bab8e700"
    "000031d2490faeac2400020000498b842448010000488943104c89e44c8bbc24c00000004c8bb4"
    "24c80000004c8bac24d00000004c8ba424d8000000488bac24e0000000488b9c24e80000004c8b"
    "9c24f00000004c8b9424f80000004c8b8c24000100004c8b842408010000488b84241001000048"
    "8b8c2418010000488b942420010000488bb42428010000488bbc2430010000ffb424380100009d"
    "488ba42440010000ff250100000090"
)
RESUME_AT = 0x120  # the routine's jump target, a quad right after the code
CODE_SIZE = RESUME_AT + 8
FRAME_SIZE = 0xE00
_RED_ZONE = 1024  # below the interrupted frame's 128-byte red zone, with room to spare
_RESUME_REGS = (
    ptrace.R15, ptrace.R14, ptrace.R13, ptrace.R12, ptrace.RBP, ptrace.RBX, ptrace.R11,
    ptrace.R10, ptrace.R9, ptrace.R8, ptrace.RAX, ptrace.RCX, ptrace.RDX, ptrace.RSI,
    ptrace.RDI,
)  # fmt: skip
# Data cave: +0 the attaching allocscope's pid, +8 result, +16 token when done, +24 the
# token of the call in flight.
DATA_SIZE = 32
# Kernel codes of an interrupted system call that restarts (ERESTARTSYS, ERESTARTNOINTR,
# ERESTARTNOHAND) and of one that restarts through restart_syscall (ERESTART_RESTARTBLOCK).
_RESTART = frozenset({-512, -513, -514})
_RESTART_BLOCK, _NR_RESTART_SYSCALL = -516, 219
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PT_LOAD, _PF_X, _PF_W = 1, 1, 2


class Busy(OSError):
    """Another attach owns the caves, or a call of an earlier one has not returned yet."""


class Moved(Exception):
    """The thread is no longer where the caller required it to be: nothing was run."""


class CallPending(TimeoutError):
    """The call did not return in time; the thread runs it to its end on its own."""


@dataclass(frozen=True)
class Caves:
    code: int  # address of CODE_SIZE unused executable bytes
    data: int  # address of DATA_SIZE unused writable bytes (zeros: past the end of .bss)
    code_bytes: bytes  # what the code cave holds: the file's bytes there


def _signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


def find_caves(data: bytes, base: int, maps: list[Mapping], path: str) -> Caves | None:
    """The code and data caves of the ELF object ``data`` mapped from ``path`` at ``base``."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    bias = 0 if data[16:18] == b"\x02\x00" else base  # ET_EXEC: absolute addresses
    (phoff,) = struct.unpack_from("<Q", data, 32)
    size, count = struct.unpack_from("<HH", data, 54)
    code: tuple[int, bytes] | None = None
    cave_data: int | None = None
    for i in range(count):
        kind, flags, offset, vaddr, _, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * size
        )
        if kind != _PT_LOAD:
            continue
        if flags & _PF_X and not flags & _PF_W:
            start = bias + vaddr + filesz
            start = -(-start // 64) * 64
            if -(-start // _PAGE) * _PAGE - start >= CODE_SIZE and _mapped(maps, start, "x", path):
                at = offset + start - bias - vaddr
                code = (start, data[at : at + CODE_SIZE].ljust(CODE_SIZE, b"\0"))
        if flags & _PF_W:
            start = -(-(bias + vaddr + memsz) // 64) * 64
            if -(-start // _PAGE) * _PAGE - start >= DATA_SIZE and _mapped(maps, start, "w", None):
                cave_data = start
    return Caves(code[0], cave_data, code[1]) if code and cave_data else None


def _mapped(maps: list[Mapping], address: int, perm: str, path: str | None) -> bool:
    return any(
        m.start <= address < m.end and perm in m.perms and (path is None or m.path == path)
        for m in maps
    )


def _resume(regs: ctypes.Array[ctypes.c_ulonglong]) -> tuple[int, int]:
    """Where the thread goes on, and its rax: an interrupted system call restarts."""
    rip, rax = int(regs[ptrace.RIP]), _signed(int(regs[ptrace.RAX]))
    if _signed(int(regs[ptrace.ORIG_RAX])) >= 0:
        if rax in _RESTART:
            return rip - 2, int(regs[ptrace.ORIG_RAX])  # `syscall` is 2 bytes
        if rax == _RESTART_BLOCK:
            return rip - 2, _NR_RESTART_SYSCALL
    return rip, rax % 2**64


class Injector:
    """Calls in the main thread of ``pid``, through the caves; ``close`` puts them back."""

    def __init__(self, pid: int, caves: Caves, deadline: float) -> None:
        self.pid = pid
        self.caves = caves
        self.deadline = deadline
        self.syscall: int | None = None  # the system call the thread last waited in
        self.where = (-1, 0)  # (that system call or -1, its instruction pointer)
        self._used = False
        self._restarted = (-1, -1)  # (where, which) system call we restarted by restart_syscall
        self._frames = 0  # the top of the highest frame we wrote on the thread's stack

    def call(
        self, *calls: tuple[int, ...], chain: bool = False, at: tuple[int, int] | None = None
    ) -> int:
        """Run up to three ``(function, *args)`` in the thread; the last one's return value.

        ``chain``: the last call's first argument is the first call's result. ``at``: run
        only if the thread still waits where the last hold found it (``where``), else
        raise Moved: between two holds it runs freely, and may have left its wait.
        """
        token = int.from_bytes(secrets.token_bytes(8), "little") | 1
        with ptrace.signals_held():
            hold = ptrace.Hold(self.pid, self.deadline)
            try:
                self._prepare(hold, calls, chain, token, at)
            finally:
                hold.release()  # the thread runs the routine, untraced
        while True:
            data = ptrace.read_memory(self.pid, self.caves.data + 8, 16)
            result, done = struct.unpack("<QQ", data)
            if done == token:
                return int(result)
            if time.monotonic() > self.deadline:
                raise CallPending(f"the call in process {self.pid} did not return in time")
            time.sleep(0.0005)

    def _prepare(self, hold: ptrace.Hold, calls: tuple[tuple[int, ...], ...], chain: bool,
                 token: int, at: tuple[int, int] | None) -> None:  # fmt: skip
        regs = hold.regs
        orig = _signed(int(regs[ptrace.ORIG_RAX]))
        self.syscall = orig if orig >= 0 else None
        if orig == _NR_RESTART_SYSCALL and self._restarted[0] + 2 == int(regs[ptrace.RIP]):
            self.syscall = self._restarted[1]  # still the wait we restarted last time
        where = (-1 if self.syscall is None else self.syscall, int(regs[ptrace.RIP]))
        if at is not None and where != at:
            raise Moved(f"thread {self.pid} left its wait")
        self.where = where
        owner, _, done, flight = struct.unpack(
            "<QQQQ", ptrace.read_memory(self.pid, self.caves.data, DATA_SIZE)
        )
        if not self._used:
            self._claim(owner, done, flight, int(regs[ptrace.RIP]))
        frame = (int(regs[ptrace.RSP]) - _RED_ZONE - FRAME_SIZE) & ~63
        image = bytearray(FRAME_SIZE)
        for i, (function, *args) in enumerate(calls):
            flags = 1 if chain and i == len(calls) - 1 and i > 0 else 0
            words = [function, *(a % 2**64 for a in args), *[0] * (6 - len(args)), flags]
            struct.pack_into("<8Q", image, i * 64, *words)
        rip, rax = _resume(regs)
        if rax == _NR_RESTART_SYSCALL and orig >= 0:
            self._restarted = (rip, self.syscall or orig)
        resume = [int(regs[r]) for r in _RESUME_REGS]
        resume[_RESUME_REGS.index(ptrace.RAX)] = rax
        struct.pack_into("<15Q", image, 0xC0, *resume)
        struct.pack_into("<3Q", image, 0x138, int(regs[ptrace.EFLAGS]),
                         int(regs[ptrace.RSP]), token)  # fmt: skip
        ptrace.write_memory(self.pid, frame, bytes(image))
        self._frames = max(self._frames, frame + FRAME_SIZE)
        ptrace.write_memory(self.pid, self.caves.code, STUB + rip.to_bytes(8, "little"))
        ptrace.write_memory(self.pid, self.caves.data, struct.pack(
            "<QQQQ", os.getpid(), 0, 0, token))  # fmt: skip
        self._used = True
        run = ptrace.Regs(*regs)
        run[ptrace.RIP], run[ptrace.RSP], run[ptrace.RBX] = self.caves.code, frame, self.caves.data
        run[ptrace.ORIG_RAX] = 2**64 - 1  # not in a system call: the kernel restarts nothing
        hold.set(run)  # from here on the thread finishes the routine whatever happens to us

    def _claim(self, owner: int, done: int, flight: int, rip: int) -> None:
        if owner and owner != os.getpid() and _alive(owner):
            raise Busy(f"another attach (allocscope pid {owner}) is running in process {self.pid}")
        if owner and done != flight:
            raise Busy(f"a call of an earlier attach has not returned yet in process {self.pid}")
        if self.caves.code <= rip < self.caves.code + CODE_SIZE:
            raise Busy(f"process {self.pid} is still leaving an earlier attach's routine")

    def close(self) -> None:
        """Put the caves' bytes back once the thread is done with the routine (a short
        hold). A call still running (waiting for the GIL, say) keeps them: it needs them to
        return, and frees nothing of ours by returning late."""
        if not self._used:
            return
        for _ in range(100):
            with ptrace.signals_held():
                hold = ptrace.Hold(self.pid, time.monotonic() + 1.0)
                try:
                    _, _, done, flight = struct.unpack(
                        "<QQQQ", ptrace.read_memory(self.pid, self.caves.data, DATA_SIZE)
                    )
                    if done != flight:
                        return
                    rip, rsp = int(hold.regs[ptrace.RIP]), int(hold.regs[ptrace.RSP])
                    # Out of the routine, and not in a signal handler that runs on top of
                    # it (which would return into it): the stack is above our frames.
                    if not self.caves.code <= rip < self.caves.code + CODE_SIZE and (
                        rsp > self._frames
                    ):
                        ptrace.write_memory(self.pid, self.caves.code, self.caves.code_bytes)
                        ptrace.write_memory(self.pid, self.caves.data, b"\0" * DATA_SIZE)
                        return
                finally:
                    hold.release()
            time.sleep(0.001)  # a few instructions from the end of the routine
        # Still not out (deep in its own calls below our frames): the routine stays, unused.


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
