"""Run worker children under each variant, sample their RSS from outside, judge each run.

One event loop (no threads) starts children, reads their event lines, samples the RSS of
every live child every ``interval`` seconds with psutil, answers each event after reading
the child's RSS and peak at that moment, and enforces every child's deadline: on timeout
the child's whole process group is killed and reaped.

By default a child starts as soon as the one before it has freed its memory, so one child
settles while the next works (settling is sleeping: it does not compete for the CPU).
Only one child is ever doing timed work. ``serial=True`` runs one child at a time.

A run counts only if it proves itself: the allocator the child detected is the variant's,
every LD_PRELOAD entry loaded, every MALLOC_CONF key in effect, the loader did not refuse
the preload and jemalloc did not reject its configuration (both said on stderr), and the
child went through every phase and exited 0. Anything else marks that run failed, with
the reasons; the other runs go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Protocol

import psutil

from allocscope.bench.analysis import noise
from allocscope.bench.kinds.workload.worker import Spec
from allocscope.bench.record import PROTOCOL, Mark, MarkInfo, Proof, RecordError, RunRecord
from allocscope.bench.results import metrics_of
from allocscope.bench.variants import Variant
from allocscope.bench.workloads import Params
from allocscope.probe import memory
from allocscope.probe.errors import ProbeError

# The parent's variables a child may see; everything else (LD_PRELOAD, MALLOC_CONF, ...)
# comes from the variant alone (pyperf's idiom).
ALLOWED_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
    "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT",
)  # fmt: skip
FIXED_ENV = {"PYTHONHASHSEED": "0"}  # the same hashing, hence the same dict layouts

_LOADER_REFUSED = re.compile(r"ERROR: ld\.so: object '([^']*)' from LD_PRELOAD cannot be .*")
_JEMALLOC_CONF = re.compile(r"<jemalloc>: (Invalid conf (?:pair|value)|Malformed conf).*")
STDERR_KEPT = 4000  # characters of a child's stderr kept in the results (the tail)
EXIT_GRACE = 5.0  # seconds a child may take to exit after its last event


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``runs`` holds what was measured before it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.runs: list[RunRecord] = []

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` inside the block, so every
    child is killed and what was measured is kept (the default SIGTERM would kill us alone
    and leave the children, each in its own session, running)."""

    def stop(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Stop signals wait (blocked by the kernel) until the block is done."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def clean_environ(
    extra: Mapping[str, str], parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The parent's allow-listed variables and FIXED_ENV, then ``extra`` (a variant's)."""
    source = os.environ if parent is None else parent
    return {**{k: source[k] for k in ALLOWED_ENV if k in source}, **FIXED_ENV, **extra}


def child_environ(variant: Variant, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    return clean_environ(variant.environ(), parent)


def stderr_problems(text: str) -> list[str]:
    """What the loader and jemalloc said on stderr that makes a run not count."""
    problems = [
        f"the loader refused to preload {m.group(1)}: {m.group(0).strip()}"
        for m in _LOADER_REFUSED.finditer(text)
    ]
    problems += [
        f"jemalloc rejected MALLOC_CONF: {m.group(0).strip()}"
        for m in _JEMALLOC_CONF.finditer(text)
    ]
    return problems


@dataclass(frozen=True)
class RunSpec:
    variant: Variant
    workload: str
    params: Params
    settle: tuple[float, ...]
    repeat: int  # 1..repeats for measured runs; 0 for warm-up
    timeout: float
    purge: bool = True
    order: int = 0  # position within its repeat, after shuffling

    @property
    def warmup(self) -> bool:
        return self.repeat == 0

    @property
    def label(self) -> str:
        which = "warm-up" if self.warmup else f"run {self.repeat}"
        return f"{self.workload} · {self.variant.name} · {which}"


def shuffled(
    variants: Iterable[Variant], *, repeats: int, warmup: int, rng: random.Random, first: int = 1
) -> list[tuple[int, int, Variant]]:
    """(repeat, order, variant) for every run, warm-ups (repeat 0) first: each repeat runs
    every available variant once, in an order shuffled by ``rng`` (its seed is recorded),
    so a burst of noise spreads over all variants instead of landing on one."""
    ready = [v for v in variants if v.available]
    rounds = [0] * warmup + list(range(first, first + repeats))
    return [(r, i, v) for r in rounds for i, v in enumerate(rng.sample(ready, len(ready)))]


def plan(
    variants: Iterable[Variant],
    workloads: Sequence[tuple[str, Params]],
    *,
    repeats: int,
    warmup: int,
    settle: tuple[float, ...],
    timeout: float,
    purge: bool = True,
    rng: random.Random | None = None,
    first: int = 1,
) -> list[RunSpec]:
    """Every run of every workload, interleaved (see :func:`shuffled`); repeats are
    numbered from ``first``; warm-ups neither settle nor purge."""
    rng = rng or random.Random(0)
    ready = list(variants)
    return [
        RunSpec(v, name, params, settle if r else (), r, timeout, purge and r > 0, order=i)
        for name, params in workloads
        for r, i, v in shuffled(ready, repeats=repeats, warmup=warmup, rng=rng, first=first)
    ]


@dataclass
class _Child:
    index: int  # in the specs
    spec: RunSpec
    proc: subprocess.Popen[bytes]
    events: int  # the read end of the child's event pipe
    stderr: IO[bytes]
    spawned: float
    deadline: float
    ps: psutil.Process | None  # the process measured: the child, or its workload's server
    tree: bool = False  # measure ps with its descendants (a server and its workers)
    buffer: bytes = b""
    marks: list[Mark] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)
    proof: Proof | None = None
    heap: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    freed: bool = False  # past its timed work: the next child may start
    result: bool = False
    closed_at: float | None = None  # when its event pipe reached EOF

    def since(self, now: float) -> float:
        return round(now - self.spawned, 4)

    def read_stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


class Labelled(Protocol):
    """A run to be made, as progress displays name it."""

    @property
    def label(self) -> str: ...


Progress = Callable[[str, Labelled, RunRecord | None], None]


class Runner:
    """Runs specs; ``progress(kind, spec, run)`` hears ``start`` and ``done``."""

    def __init__(
        self,
        *,
        interval: float = 0.05,
        serial: bool = False,
        max_live: int = 4,
        python: str = sys.executable,
        progress: Progress | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"the sampling interval must be greater than 0, not {interval}")
        self.interval = interval
        self.serial = serial
        self.max_live = max_live
        self.python = python
        self.progress = progress or (lambda kind, spec, run: None)

    def run(self, specs: Sequence[RunSpec]) -> list[RunRecord]:
        """Every spec's run, in the order of ``specs`` (they may finish in another).

        Interrupted (:class:`Interrupted`, raised by :func:`stop_on_signals`), it kills
        every live child's process group, then re-raises with the runs already done."""
        pending = deque(enumerate(specs))
        live: list[_Child] = []
        done: dict[int, RunRecord] = {}
        sel = selectors.DefaultSelector()
        meter = noise.Meter(lambda: [c.proc.pid for c in live])
        try:
            next_sample = time.monotonic()
            while pending or live:
                while pending and self._may_start(live):
                    # No signal between the fork and the bookkeeping that lets us kill it.
                    with _signals_held():
                        index, spec = pending.popleft()
                        meter.start(index)
                        child = self._spawn(index, spec)
                        sel.register(child.events, selectors.EVENT_READ, child)
                        live.append(child)
                now = time.monotonic()
                wait = min([next_sample, *(c.deadline for c in live)]) - now
                for key, _ in sel.select(max(0.0, wait)):
                    self._read(key.data)
                now = time.monotonic()
                if now >= next_sample:
                    for child in live:
                        self._sample(child, now)
                    next_sample = max(next_sample + self.interval, now)
                for child in [c for c in live if self._finished(c, now)]:
                    with _signals_held():  # reaped whole, or left in live to be killed
                        sel.unregister(child.events)
                        live.remove(child)
                        run = replace(self._reap(child), noise=meter.stop(child.index))
                        done[child.index] = run
                    self.progress("done", child.spec, run)
        except Interrupted as e:
            e.runs = [done[i] for i in sorted(done)]
            raise
        finally:
            for child in live:  # interrupted: leave nothing behind
                _kill(child.proc)
                os.close(child.events)
                child.stderr.close()
            sel.close()
        return [done[i] for i in sorted(done)]

    def _may_start(self, live: list[_Child]) -> bool:
        if self.serial:
            return not live
        return len(live) < self.max_live and all(c.freed or c.closed_at for c in live)

    def _spawn(self, index: int, spec: RunSpec) -> _Child:
        worker_spec = Spec(
            spec.workload, spec.params, spec.variant.allocator, spec.settle, spec.purge
        )
        read_fd, write_fd = os.pipe()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _reap)
        cmd = [self.python, "-m", "allocscope.bench.kinds.workload.worker", worker_spec.to_json()]
        try:
            proc = subprocess.Popen(
                [*cmd, "--fd", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=stderr,
                stderr=stderr,
                env=child_environ(spec.variant),
                pass_fds=(write_fd,),
                start_new_session=True,  # its own process group: killed as a whole
            )
        except BaseException:
            os.close(read_fd)
            stderr.close()
            raise
        finally:
            os.close(write_fd)
        self.progress("start", spec, None)
        now = time.monotonic()
        deadline = now + spec.timeout
        return _Child(index, spec, proc, read_fd, stderr, now, deadline, _process(proc.pid))

    def _read(self, child: _Child) -> None:
        chunk = os.read(child.events, 65536)
        if not chunk:
            child.closed_at = child.closed_at or time.monotonic()
            return
        child.buffer += chunk
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._event(child, line)

    def _event(self, child: _Child, line: bytes) -> None:
        now = time.monotonic()
        try:
            msg = json.loads(line)
            event = str(msg.pop("event"))
            msg.pop("t", None)
        except (ValueError, KeyError, AttributeError):
            child.failures.append(f"the child sent a line that is not an event: {line[:200]!r}")
            self._answer(child, "stop")
            return
        if event == "result":
            child.heap = msg.get("heap")
            child.result = True
            return
        if event == "error":
            child.failures.append(f"the workload failed: {msg.get('message')}")
            return
        rss, hwm = self._memory(child)
        if event == "ready":
            problems = self._read_proof(child, msg)
            target = msg.get("measure_pid")
            if isinstance(target, int) and target != child.proc.pid:
                child.ps, child.tree = _process(target), True
                rss, hwm = self._memory(child)
            measured = target if isinstance(target, int) else None
            info = MarkInfo(pid=child.proc.pid, measured_pid=measured)
            if problems:
                child.failures += problems
                child.marks.append(Mark(event, child.since(now), rss, hwm, info))
                self._answer(child, "stop")
                return
        else:
            try:
                info = MarkInfo.from_dict(msg, event, event)
            except RecordError as e:
                child.failures.append(f"the child sent an impossible figure: {e}")
                self._answer(child, "stop")
                return
        if event == "freed":
            child.freed = True
        if child.tree and event in ("work_start", "work_end"):
            info = replace(info, server_cpu_s=_cpu(child.ps))  # the server's, from outside
        child.marks.append(Mark(event, child.since(now), rss, hwm, info))
        if rss is not None:
            child.timeline.append((child.since(now), rss))
        self._answer(child, "go")

    def _read_proof(self, child: _Child, msg: dict[str, Any]) -> list[str]:
        """The child's proof, typed and checked against the variant: what is wrong with it."""
        problems = stderr_problems(child.read_stderr())
        if msg.get("protocol") != PROTOCOL:
            return [
                *problems,
                f"the child speaks protocol {msg.get('protocol')!r}, this runner {PROTOCOL}",
            ]
        try:
            child.proof = Proof.from_dict(msg.get("proof"))
        except RecordError as e:
            return [*problems, f"the child's proof is malformed: {e}"]
        return problems + child.proof.problems(child.spec.variant.allocator)

    def _answer(self, child: _Child, word: str) -> None:
        if child.proc.stdin is None:
            return
        try:
            child.proc.stdin.write(word.encode() + b"\n")
            child.proc.stdin.flush()
        except OSError:
            pass  # it has gone; its exit status will tell
        if word == "stop":
            child.freed = True  # it will do no timed work

    def _memory(self, child: _Child) -> tuple[int | None, int | None]:
        """RSS and peak of the measured process and its descendants, from /proc."""
        rss = hwm = 0
        for pid in _tree(child.ps, child.tree) or [child.proc.pid]:
            try:
                mem = memory.read(pid=pid, rollup=False)
            except ProbeError:
                continue
            rss, hwm = rss + mem.rss_bytes, hwm + mem.peak_rss_bytes
        return (rss, hwm) if rss else (None, None)

    def _sample(self, child: _Child, now: float) -> None:
        if child.ps is None or child.closed_at:
            return
        procs = [child.ps]
        if child.tree:
            with contextlib.suppress(psutil.Error):
                procs += child.ps.children(recursive=True)
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += int(proc.memory_info().rss)
        if total:
            child.timeline.append((child.since(now), total))

    def _finished(self, child: _Child, now: float) -> bool:
        if now >= child.deadline:
            child.failures.append(f"timed out after {child.spec.timeout:g} s: killed")
            _kill(child.proc)
            return True
        if child.closed_at is not None and _exited(child.proc):
            return True
        if child.closed_at is not None and now - child.closed_at > EXIT_GRACE:
            child.failures.append(f"did not exit within {EXIT_GRACE:g} s of its last event")
            _kill(child.proc)
            return True
        return False

    def _reap(self, child: _Child) -> RunRecord:
        code = _kill(child.proc)  # exited already; this also ends anything it left behind
        if child.proc.stdin is not None:
            with contextlib.suppress(OSError):
                child.proc.stdin.close()
        os.close(child.events)
        text = child.read_stderr()
        child.stderr.close()
        failures = list(child.failures)
        if child.proof is None and not failures:
            failures.append("the child exited before it proved its allocator")
        failures += [p for p in stderr_problems(text) if p not in failures]
        stopped = bool(failures)
        if not stopped and code != 0:
            failures.append(f"the child exited with status {code}")
        if not stopped and not child.result:
            failures.append("the child did not report its result")
        marks = child.marks
        return RunRecord(
            variant=child.spec.variant.name,
            workload=child.spec.workload,
            repeat=child.spec.repeat,
            order=child.spec.order,
            ok=not failures,
            failures=failures,
            metrics=metrics_of(marks, child.timeline) if not failures else {},
            marks=marks,
            timeline=child.timeline,
            proof=child.proof,
            heap=child.heap,
            exit_code=code,
            stderr=text[-STDERR_KEPT:],
            duration_s=round(time.monotonic() - child.spawned, 3),
            params=child.spec.params.to_dict(),
        )


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _tree(ps: psutil.Process | None, descendants: bool) -> list[int]:
    """``ps`` and, if asked, its descendants (a server's workers count too)."""
    if ps is None:
        return []
    if not descendants:
        return [ps.pid]
    try:
        return [ps.pid, *(c.pid for c in ps.children(recursive=True))]
    except psutil.Error:
        return []


def _cpu(ps: psutil.Process | None) -> float | None:
    """User + system CPU seconds of ``ps`` and its descendants."""
    total = 0.0
    for pid in _tree(ps, True):
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return round(total, 4) if ps is not None else None


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the child exited? Asked without reaping it, so its group id stays ours."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the child's whole process group (before reaping the child, while the
    group id cannot be reused), then reap the child; return its exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()
