"""Call a C function inside another process, briefly, with ptrace (x86-64 Linux only).

This is what gdb's ``call`` does, without gdb: gdb 13 cannot restore the extended
register state on some kernels ("Couldn't write extended state status: Bad address"),
while PTRACE_GETREGS/SETREGS and GETFPREGS/SETFPREGS work. The thread is seized and
interrupted, its registers saved; each call points rip at the function with the System V
arguments, on a 16-byte-aligned stack below the red zone, returning to address 0; the
SIGSEGV that return raises is where the result (rax) is read. Then registers are put
back exactly (an interrupted system call restarts as the kernel would have restarted it)
and the thread is detached. Signals that arrive meanwhile are delivered at detach.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time
from types import TracebackType

_PTRACE_CONT, _PTRACE_DETACH = 7, 17
_PTRACE_GETREGS, _PTRACE_SETREGS, _PTRACE_GETFPREGS, _PTRACE_SETFPREGS = 12, 13, 14, 15
_PTRACE_SEIZE, _PTRACE_INTERRUPT = 0x4206, 0x4207
_WALL = 0x40000000
# struct user_regs_struct (x86-64): indices of the registers we use
_RAX, _RCX, _RDX, _RSI, _RDI, _ORIG_RAX, _RIP, _RSP = 10, 11, 12, 13, 14, 15, 16, 19
_R8, _R9 = 9, 8
_ARGS = (_RDI, _RSI, _RDX, _RCX, _R8, _R9)
_RED_ZONE = 1024  # below the interrupted frame's 128-byte red zone, with room to spare

_Regs = ctypes.c_ulonglong * 27
_FpRegs = ctypes.c_ubyte * 512


class PtraceError(OSError):
    """ptrace refused (EPERM: no CAP_SYS_PTRACE, Yama, or another tracer) or failed."""


class CallTimeout(TimeoutError):
    pass


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    libc.ptrace.restype = ctypes.c_long
    return libc


def supported() -> str | None:
    """Why calls cannot be made from here, or None when they can."""
    machine = os.uname().machine
    return None if machine == "x86_64" else f"attach is implemented for x86-64 only, not {machine}"


class Tracee:
    """A seized thread; use as a context manager, then ``call`` functions in it."""

    def __init__(self, tid: int, timeout: float = 5.0) -> None:
        self.tid = tid
        self.timeout = timeout
        self._libc = _libc()
        self._saved = _Regs()
        self._fp = _FpRegs()
        self._pending: list[int] = []  # signals to deliver when we detach

    def _ptrace(self, request: int, data: object = None, what: str = "ptrace") -> None:
        arg = ctypes.byref(data) if isinstance(data, ctypes.Array) else data
        if self._libc.ptrace(request, self.tid, None, arg) == -1:
            code = ctypes.get_errno()
            raise PtraceError(code, f"{what}: {os.strerror(code)}")

    def __enter__(self) -> Tracee:
        self._ptrace(_PTRACE_SEIZE, what="PTRACE_SEIZE")
        try:
            self._ptrace(_PTRACE_INTERRUPT, what="PTRACE_INTERRUPT")
            self._wait_stop(lambda status: True)
            self._ptrace(_PTRACE_GETREGS, self._saved, "PTRACE_GETREGS")
            self._ptrace(_PTRACE_GETFPREGS, self._fp, "PTRACE_GETFPREGS")
        except BaseException:
            self._detach()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._ptrace(_PTRACE_SETREGS, self._saved, "PTRACE_SETREGS")
            self._ptrace(_PTRACE_SETFPREGS, self._fp, "PTRACE_SETFPREGS")
        finally:
            self._detach()

    def _detach(self) -> None:
        sig = self._pending[0] if self._pending else 0
        self._libc.ptrace(_PTRACE_DETACH, self.tid, None, ctypes.c_void_p(sig))
        for other in self._pending[1:]:
            os.kill(self.tid, other)

    def _wait_stop(self, done: object) -> int:
        """Wait (with the timeout) until a stop that ``done(status)`` accepts."""
        deadline = time.monotonic() + self.timeout
        while True:
            pid, status = os.waitpid(self.tid, os.WNOHANG | _WALL)
            if pid == 0:
                if time.monotonic() > deadline:
                    raise CallTimeout(f"thread {self.tid} did not stop within {self.timeout} s")
                time.sleep(0.0005)
                continue
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                raise PtraceError(errno.ESRCH, f"process {self.tid} exited")
            if done(status):  # type: ignore[operator]
                return status
            sig = os.WSTOPSIG(status)
            if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL) and status >> 16 == 0:
                raise PtraceError(errno.EFAULT, f"the call faulted ({signal.Signals(sig).name})")
            if sig not in (signal.SIGTRAP, signal.SIGSTOP) and status >> 16 == 0:
                self._pending.append(sig)  # a real signal: hold it, deliver it at detach
            self._ptrace(_PTRACE_CONT, None, "PTRACE_CONT")

    @property
    def syscall(self) -> int | None:
        """The system call the thread was stopped in (its number), or None."""
        number = int(self._saved[_ORIG_RAX])
        return None if number >= 2**63 else number

    def call(self, function: int, *args: int) -> int:
        """Run ``function(*args)`` in the thread; its return value (rax, unsigned)."""
        regs = _Regs(*self._saved)
        for index, value in zip(_ARGS, args, strict=False):
            regs[index] = value & 0xFFFFFFFFFFFFFFFF
        sp = ((self._saved[_RSP] - _RED_ZONE) & ~0xF) - 8  # as after a `call`: rsp+8 aligned
        self.write(sp, b"\0" * 8)  # the return address: 0, so returning faults where we wait
        regs[_RSP], regs[_RIP], regs[_RAX] = sp, function, 0
        regs[_ORIG_RAX] = 0xFFFFFFFFFFFFFFFF  # not in a system call: no restart fix-up
        self._ptrace(_PTRACE_SETREGS, regs, "PTRACE_SETREGS")
        self._ptrace(_PTRACE_CONT, None, "PTRACE_CONT")
        try:
            self._wait_stop(self._returned)
        except CallTimeout:
            self._ptrace(_PTRACE_INTERRUPT, what="PTRACE_INTERRUPT")
            self._wait_stop(lambda status: True)
            raise
        out = _Regs()
        self._ptrace(_PTRACE_GETREGS, out, "PTRACE_GETREGS")
        return int(out[_RAX])

    def _returned(self, status: int) -> bool:
        if os.WSTOPSIG(status) != signal.SIGSEGV:
            return False
        regs = _Regs()
        self._ptrace(_PTRACE_GETREGS, regs, "PTRACE_GETREGS")
        return regs[_RIP] == 0

    def write(self, address: int, data: bytes) -> None:
        write_memory(self.tid, address, data)


def write_memory(pid: int, address: int, data: bytes) -> None:
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        mem.write(data)


def read_memory(pid: int, address: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(address)
        return mem.read(size)
