"""Linux process controls through prctl(2): who outlives whom, and who adopts orphans."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.prctl.restype = ctypes.c_int


def _prctl(option: int, arg: int) -> int:
    rc = int(_libc.prctl(option, arg, 0, 0, 0))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Receive ``sig`` when the parent (pid ``parent``) ends, even by SIGKILL; if it has
    already ended (we were re-parented before this call), send it now."""
    _prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def become_subreaper(on: bool = True) -> None:
    """Orphans among our descendants are re-parented to us, not to init: a daemon that
    left our process group and session still shows up as our child. ``on=False`` gives
    that back (a library caller's process must not keep adopting orphans it never reaps)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    if _libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag), 0, 0, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return bool(flag.value)
