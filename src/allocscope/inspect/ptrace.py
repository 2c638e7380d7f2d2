"""ptrace primitives (x86-64 Linux): seize a thread, read and set its registers, let go.

Only what ``inject`` needs: a thread is held for a few system calls at a time (seize,
interrupt, read registers, write memory, set registers, detach), never while code of
ours runs in it. Memory is read and written through /proc/PID/mem.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import time
from collections.abc import Iterator

_PTRACE_CONT, _PTRACE_DETACH = 7, 17
_PTRACE_GETREGS, _PTRACE_SETREGS = 12, 13
_PTRACE_SEIZE, _PTRACE_INTERRUPT = 0x4206, 0x4207
_PTRACE_EVENT_STOP = 128
_WALL = 0x40000000
# struct user_regs_struct (x86-64): indices of the registers we use
RAX, RCX, RDX, RSI, RDI, ORIG_RAX, RIP, RSP, RBX = 10, 11, 12, 13, 14, 15, 16, 19, 5
R15, R14, R13, R12, RBP, R11, R10, R9, R8, EFLAGS = 0, 1, 2, 3, 4, 6, 7, 8, 9, 18

Regs = ctypes.c_ulonglong * 27
# Signals whose default action would end allocscope while it holds a thread: held back
# (blocked) for the few system calls a hold lasts, delivered right after.
CATCHABLE = frozenset(
    {
        signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE,
        signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTSTP, signal.SIGTTIN,
        signal.SIGTTOU, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGVTALRM, signal.SIGPROF,
    }
)  # fmt: skip


class PtraceError(OSError):
    """ptrace refused (EPERM: no CAP_SYS_PTRACE, Yama, or another tracer) or failed."""


class StopTimeout(TimeoutError):
    """The thread did not reach a ptrace stop in time (e.g. uninterruptible sleep)."""


class GroupStopped(OSError):
    """The process is stopped by a signal (SIGSTOP, Ctrl-Z): it runs nothing until continued."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    libc.ptrace.restype = ctypes.c_long
    return libc


def supported(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """Why calls cannot be made from here, or None when they can."""
    machine = os.uname().machine
    if machine != "x86_64":
        return f"ptrace attach is x86-64 only, not {machine}"
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    if "xsave" not in flags:  # the routine saves the vector registers with XSAVE
        return "ptrace attach needs a CPU with XSAVE enabled (no 'xsave' in /proc/cpuinfo)"
    return None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Block the catchable signals inside the block; restore the mask on every way out."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Hold:
    """One thread seized and stopped; ``release`` lets it run on from its registers.

    Use inside :func:`signals_held`: if allocscope dies anyway (SIGKILL), the kernel
    detaches the thread, which runs on from whatever registers it holds at that moment.
    """

    def __init__(self, tid: int, deadline: float) -> None:
        self.tid = tid
        self._libc = _libc()
        self._ptrace(_PTRACE_SEIZE, None, "PTRACE_SEIZE")
        try:
            self._ptrace(_PTRACE_INTERRUPT, None, "PTRACE_INTERRUPT")
            self._stop(deadline)
            self.regs = Regs()
            self._ptrace(_PTRACE_GETREGS, self.regs, "PTRACE_GETREGS")
        except BaseException:
            self.release()
            raise

    def _ptrace(self, request: int, data: object, what: str) -> None:
        arg = ctypes.byref(data) if isinstance(data, ctypes.Array) else data
        if self._libc.ptrace(request, self.tid, None, arg) == -1:
            code = ctypes.get_errno()
            raise PtraceError(code, f"{what}: {os.strerror(code)}")

    def _stop(self, deadline: float) -> None:
        """Wait for the interrupt's stop; a signal that arrives first goes on to the thread."""
        while True:
            pid, status = os.waitpid(self.tid, os.WNOHANG | _WALL)
            if pid == 0:
                if time.monotonic() > deadline:
                    raise StopTimeout(f"thread {self.tid} did not stop for ptrace in time")
                time.sleep(0.0002)
                continue
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                raise PtraceError(errno.ESRCH, f"process {self.tid} exited")
            sig = os.WSTOPSIG(status)
            if status >> 16 == _PTRACE_EVENT_STOP:
                if sig == signal.SIGTRAP:
                    return  # our interrupt
                raise GroupStopped(f"process {self.tid} is stopped ({signal.Signals(sig).name})")
            # A signal-delivery stop: hand the signal on at once, then wait for our stop.
            self._ptrace(_PTRACE_CONT, ctypes.c_void_p(sig), "PTRACE_CONT")

    def set(self, regs: ctypes.Array[ctypes.c_ulonglong]) -> None:
        self._ptrace(_PTRACE_SETREGS, regs, "PTRACE_SETREGS")

    def release(self) -> None:
        """Detach (a group stop in progress stays a stop, as the kernel keeps it)."""
        self._libc.ptrace(_PTRACE_DETACH, self.tid, None, None)


def tracer_of(pid: int) -> tuple[int, str] | None:
    """The process tracing ``pid`` (TracerPid) and its name, or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            fields = dict(line.split(":\t", 1) for line in f if ":\t" in line)
        tracer = int(fields.get("TracerPid", "0"))
    except (OSError, ValueError):
        return None
    if not tracer:
        return None
    try:
        with open(f"/proc/{tracer}/comm", encoding="utf-8", errors="replace") as f:
            return tracer, f.read().strip()
    except OSError:
        return tracer, "?"


def write_memory(pid: int, address: int, data: bytes) -> None:
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        mem.write(data)


def read_memory(pid: int, address: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(address)
        return mem.read(size)
