"""Processes a run's command started that escaped its process group: found, stopped, told.

A command (or a server) may start a daemon that leaves its process group and session
(``setsid bash -c 'sleep 777 & disown'``). Stopping the group misses it, and once its
parent exits it is re-parented away from the tree we sample. Two things find it:

- every process of a run carries the run's marker in its environment (the hook
  directory, unique per run; children inherit it, ``setsid`` keeps it), so a scan of
  /proc finds it wherever it was re-parented;
- allocscope is a child subreaper (``PR_SET_CHILD_SUBREAPER``): such orphans are
  re-parented to allocscope rather than to init, so when stopped they are reaped here
  instead of lingering.

A process that both leaves the group and clears its environment before it is seen is
not found: nothing on it says it was ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

from allocscope import procctl
from allocscope.bench.evidence import Escaped


def adopt() -> bool:
    """Make this process a child subreaper; False where the kernel has no such thing."""
    try:
        procctl.become_subreaper()
    except (OSError, AttributeError):
        return False
    return True


def marked(key: str, value: str, proc_root: str = "/proc") -> set[int]:
    """Live processes whose environment holds ``key=value``."""
    needle = f"{key}={value}".encode()
    found = set()
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc_root}/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue  # gone, a kernel thread, or another user's
        if needle in env.split(b"\0") and not _zombie(int(name), proc_root):
            found.add(int(name))
    return found


def command(pid: int, proc_root: str = "/proc") -> str:
    try:
        with open(f"{proc_root}/{pid}/cmdline", "rb") as f:
            words = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        words = ""
    return words[:200] or "?"


def group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def outside(group: int, pids: Iterable[int]) -> dict[int, str]:
    """Those of ``pids`` alive outside process group ``group``, with their commands."""
    return {p: command(p) for p in pids if p != group and _live(p) and group_of(p) != group}


def stop(names: dict[int, str], grace: float) -> list[Escaped]:
    """SIGTERM each, SIGKILL what is left after ``grace``; reap those re-parented to us."""
    for pid in names:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_live(p) for p in names) and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = {p for p in names if _live(p)}
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    for pid in names:
        _reap(pid)
    return [Escaped(p, n, "SIGKILL" if p in killed else "SIGTERM") for p, n in names.items()]


def signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        _signal(pid, sig)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect its status if it is our child (a subreaper adopted it); else nothing."""
    with contextlib.suppress(ChildProcessError):
        for _ in range(100):  # SIGKILL takes a moment to land
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.01)


def _live(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and not _zombie(pid)


def _zombie(pid: int, proc_root: str = "/proc") -> bool:
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # gone
