"""A process and all its descendants, measured from /proc: RSS, PSS, CPU, over time.

Used for any command or service allocscope did not write: the root is the process we
started; its descendants are found through each process's parent pid (a forking server's
workers, a shell's children). ``proc_root`` is a parameter so tests can use a fake tree.

Long runs keep memory bounded: a :class:`Series` holds at most ``cap`` points and, when
full, halves its resolution by merging neighbours (keeping the larger value, so a peak is
never smoothed away). Slopes are fitted on the fly (:class:`Fit`), from every sample,
not from the downsampled points.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from allocscope.bench.evidence import ProcessPoint, ProcessTrace, TreePoint, TreeTrace
from allocscope.inspect import InspectError, process_tree
from allocscope.probe import procfs
from allocscope.probe.errors import ProbeError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERIES_CAP = 2000  # points per timeline: enough for a chart, bounded for an 8 h soak
KB = 1024


def _stat_fields(proc_root: str, pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    text = procfs.read_text("stat", proc_root, pid)
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int, proc_root: str = procfs.DEFAULT_ROOT) -> list[int]:
    """``root`` and every process below it, parents before children; [] once it is gone."""
    try:
        return process_tree(root, proc_root)
    except InspectError:
        return []


@dataclass(frozen=True)
class ProcSample:
    pid: int
    ppid: int
    name: str
    rss: int  # bytes
    pss: int | None  # bytes; None where smaps_rollup cannot be read
    cpu_s: float  # user + system of this process alone


def sample(pid: int, proc_root: str = procfs.DEFAULT_ROOT, *, pss: bool = True) -> ProcSample:
    """One process, now. ProbeError when it is gone."""
    fields = _stat_fields(proc_root, pid)
    status = procfs.key_values(procfs.read_text("status", proc_root, pid))
    if "VmRSS" not in status:  # a zombie: exited, not yet reaped
        raise ProbeError(f"process {pid} has no memory (exited)")
    name = procfs.read_text("comm", proc_root, pid).strip()
    pss_bytes = None
    if pss:
        try:
            pss_bytes = procfs.key_values(procfs.read_text("smaps_rollup", proc_root, pid)).get(
                "Pss"
            )
        except ProbeError:
            pss_bytes = None
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return ProcSample(pid, int(fields[1]), name, status["VmRSS"], pss_bytes, cpu)


class Series:
    """(t, value, ...) points, at most ``cap`` of them, evenly spread over the whole run.

    Each kept point stands for ``stride`` samples (the one with the largest value, so a
    peak is never smoothed away). When full, neighbours merge and the stride doubles.
    """

    def __init__(self, cap: int = SERIES_CAP) -> None:
        self.cap = max(4, cap)
        self.kept: list[tuple[float, ...]] = []
        self.stride = 1  # samples per kept point
        self._group: tuple[float, ...] | None = None  # the largest of the current stride
        self._count = 0

    @property
    def points(self) -> list[tuple[float, ...]]:
        return self.kept + ([self._group] if self._group is not None else [])

    def add(self, point: tuple[float, ...]) -> None:
        if self._group is None or point[1] > self._group[1]:
            self._group = point
        self._count += 1
        if self._count < self.stride:
            return
        self.kept.append(self._group)
        self._group, self._count = None, 0
        if len(self.kept) >= self.cap:
            pts = self.kept
            self.kept = [max(pts[i : i + 2], key=lambda p: p[1]) for i in range(0, len(pts), 2)]
            self.stride *= 2


@dataclass
class Fit:
    """Least-squares line y = a + b x, accumulated one point at a time."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0
    syy: float = 0.0

    def add(self, x: float, y: float) -> None:
        self.n += 1
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.sxy += x * y
        self.syy += y * y

    def slope(self) -> tuple[float, float] | None:
        """(slope, its standard error), or None with fewer than 3 points or no spread in x."""
        if self.n < 3:
            return None
        dxx = self.sxx - self.sx * self.sx / self.n
        if dxx <= 0:
            return None
        dxy = self.sxy - self.sx * self.sy / self.n
        dyy = self.syy - self.sy * self.sy / self.n
        b = dxy / dxx
        residual = max(0.0, dyy - b * dxy)
        return b, math.sqrt(residual / (self.n - 2) / dxx)


def verdict(slope: float, stderr: float, noise: float) -> str:
    """'growing', 'shrinking' or 'flat' from a slope, its error and what counts as noise.

    Growing only when even the low end of the ~95 % interval (2 standard errors) is above
    ``noise``: a fit over many samples has a tiny error, and a real but negligible drift
    should not be called growth.
    """
    if slope - 2 * stderr > noise:
        return "growing"
    if slope + 2 * stderr < -noise:
        return "shrinking"
    if abs(slope) + 2 * stderr <= 4 * noise or abs(slope) <= noise:
        return "flat"
    return "unclear"


@dataclass
class Tree:
    """Samples of one process tree: totals and per process, bounded in memory."""

    root: int
    proc_root: str = procfs.DEFAULT_ROOT
    pss: bool = True
    total: Series = field(default_factory=Series)  # (t, rss, pss, processes)
    per_process: dict[int, Series] = field(default_factory=dict)  # pid -> (t, rss, pss)
    names: dict[int, str] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)  # pid -> its last CPU reading
    peak_rss: int = 0
    peak_pss: int = 0
    last: tuple[float, int, int] | None = None  # (t, rss, pss) of the last sample

    def take(self, t: float) -> list[ProcSample]:
        """Sample every live process of the tree at ``t`` (seconds since the start)."""
        samples = []
        for pid in descendants(self.root, self.proc_root):
            try:
                s = sample(pid, self.proc_root, pss=self.pss)
            except (ProbeError, ValueError, IndexError):
                continue
            samples.append(s)
            self.names[pid] = s.name
            self.parent.setdefault(pid, s.ppid)
            self.cpu_last[pid] = s.cpu_s
            self.per_process.setdefault(pid, Series(self.total.cap // 4)).add(
                (round(t, 3), s.rss, s.pss or 0)
            )
        if samples:
            rss = sum(s.rss for s in samples)
            pss = sum(s.pss or 0 for s in samples)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.total.add((round(t, 3), rss, pss, len(samples)))
            self.last = (t, rss, pss)
        return samples

    def cpu_s(self) -> float:
        """CPU seconds of every process seen (each at its last reading)."""
        return round(sum(self.cpu_last.values()), 3)

    def trace(self) -> TreeTrace:
        """What a run's evidence keeps of the tree: totals and each process, over time."""
        return TreeTrace(
            root=self.root,
            peak_rss=self.peak_rss,
            peak_pss=self.peak_pss,
            cpu_s=self.cpu_s(),
            stride=self.total.stride,
            timeline=tuple(
                TreePoint(p[0], int(p[1]), int(p[2]), int(p[3])) for p in self.total.points
            ),
            processes=tuple(
                ProcessTrace(
                    pid=pid,
                    ppid=self.parent[pid],
                    name=self.names[pid],
                    cpu_s=round(self.cpu_last.get(pid, 0.0), 3),
                    peak_rss=max((int(p[1]) for p in series.points), default=0),
                    timeline=tuple(ProcessPoint(p[0], int(p[1]), int(p[2])) for p in series.points),
                )
                for pid, series in self.per_process.items()
            ),
        )


def rss_timeline(points: Iterable[tuple[float, ...]]) -> list[tuple[float, int]]:
    """(t, total RSS) pairs, the shape every run's ``timeline`` has."""
    return [(float(p[0]), int(p[1])) for p in points]
