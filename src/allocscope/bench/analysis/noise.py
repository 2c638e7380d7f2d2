"""What else the machine does while we measure: load, CPU steal, other busy processes.

A window opens when a run starts and closes when it is reaped. Steal comes from the
``cpu`` line of ``/proc/stat``; other processes' CPU from psutil, read at both ends of
the window (a process born inside the window counts all its CPU time). Our own processes
(this one and every child's session: each child leads its own) are left out, so the
figure is what *others* took from the machine while a run was timed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from allocscope.bench.record import Noise

# A run is marked busy when others used this share of the machine's CPUs, or the
# hypervisor stole this share of its CPU time.
BUSY_SHARE = 0.25
BUSY_STEAL = 0.05
BUSY_PROCESS = 0.25  # a process using this many CPUs (averaged over the window) is named
# The load average counts what psutil cannot see (other containers' processes) but also our
# own children: a 4-thread workload alone loads 2 CPUs to about 2.5 per CPU. Beyond 3 per
# CPU, others are at work.
BUSY_LOAD = 3.0
# A process's start time is boot time (whole seconds in /proc/stat) plus clock ticks: it
# may read up to a second early, so a process born just after the window opened must not
# be taken for one that was already running.
BORN_SLACK = 1.0


@dataclass(frozen=True)
class CpuStat:
    total: int  # jiffies, every state
    steal: int


def cpu_stat(path: str = "/proc/stat") -> CpuStat | None:
    try:
        with open(path, encoding="ascii") as f:
            fields = f.readline().split()
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    try:
        values = [int(x) for x in fields[1:]]
    except ValueError:
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice: guests are already
    # counted in user and nice.
    return CpuStat(total=sum(values[:8]), steal=values[7] if len(values) > 7 else 0)


def process_cpu() -> dict[int, tuple[str, float, float]]:
    """pid -> (name, CPU seconds so far, start time) of every process we may read."""
    out = {}
    for p in psutil.process_iter(["name", "cpu_times", "create_time"]):
        times = p.info.get("cpu_times")
        if times is None:
            continue
        out[p.pid] = (str(p.info.get("name")), times.user + times.system, p.info["create_time"])
    return out


@dataclass(frozen=True)
class Window:
    started: float  # time.time()
    load1: float
    stat: CpuStat | None
    procs: dict[int, tuple[str, float, float]]


def open_window() -> Window:
    return Window(time.time(), os.getloadavg()[0], cpu_stat(), process_cpu())


def _ours(pid: int, sessions: set[int]) -> bool:
    if pid == os.getpid():
        return True
    try:
        return os.getsid(pid) in sessions
    except OSError:
        return False


def cpu_of_others(
    window: Window, now: dict[int, tuple[str, float, float]], ours: Callable[[int], bool]
) -> list[tuple[str, float]]:
    """(name, CPU seconds used in the window) of every process not ours that used some."""
    out = []
    for pid, (name, cpu, born) in now.items():
        if ours(pid):
            continue
        before = window.procs.get(pid)
        if before is not None and before[2] == born:
            delta = cpu - before[1]
        elif born >= window.started - BORN_SLACK:
            delta = cpu  # born during the window (or the pid was reused since)
        else:
            continue  # unreadable at the start
        if delta > 0:
            out.append((name, delta))
    return out


def close_window(window: Window, sessions: Iterable[int], *, cpus: int | None = None) -> Noise:
    """The noise between ``window`` and now; ``sessions``: our children's session ids."""
    elapsed = max(time.time() - window.started, 1e-3)
    ours = set(sessions)
    used = [
        (delta / elapsed, name)
        for name, delta in cpu_of_others(window, process_cpu(), lambda pid: _ours(pid, ours))
    ]
    other = sum(share for share, _ in used)
    stat = cpu_stat()
    steal = 0.0
    if window.stat and stat and stat.total > window.stat.total:
        steal = (stat.steal - window.stat.steal) / (stat.total - window.stat.total)
    n = cpus or len(os.sched_getaffinity(0)) or 1
    busy = tuple(
        f"{name} ({share:.1f} CPU)"
        for share, name in sorted(used, reverse=True)
        if share >= BUSY_PROCESS
    )
    return Noise(
        load1=round(window.load1, 2),
        steal=round(max(0.0, steal), 4),
        other_cpu=round(other, 3),
        busy=busy[:5],
        marked=other >= BUSY_SHARE * n or steal >= BUSY_STEAL or window.load1 >= BUSY_LOAD * n,
    )


class Meter:
    """Noise per run: ``start(key)`` when a run starts, ``stop(key)`` when it is reaped."""

    def __init__(self, sessions: Callable[[], Iterable[int]]) -> None:
        self._sessions = sessions
        self._open: dict[int, Window] = {}

    def start(self, key: int) -> None:
        with contextlib.suppress(psutil.Error, OSError):
            self._open[key] = open_window()

    def stop(self, key: int) -> Noise | None:
        window = self._open.pop(key, None)
        if window is None:
            return None
        try:
            return close_window(window, self._sessions())
        except (psutil.Error, OSError):
            return None
