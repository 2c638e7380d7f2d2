"""Any service, under load, per variant: start, ready, prove, warm up, load, settle, stop.

``allocscope compare --serve 'gunicorn -w 2 -b 127.0.0.1:{port} app:app' --ready /healthz
--duration 60s`` starts the user's server on a free loopback port, waits until ``--ready``
answers 2xx, proves every server process's allocator from outside, warms up, loads it
(the built-in generator, or the user's own with ``--load-cmd``), lets it settle and reads
RSS at the ``--settle`` points, then stops it: SIGTERM to its process group, SIGKILL after the
grace period, nothing left running. The whole tree is sampled throughout; the growth of
RSS during the load is fitted against requests and against time, with its error.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

from allocscope.bench.evidence import Evidence, Fit, Growth, LoadSummary, Stop
from allocscope.bench.kinds.process import kept, listening, load, tree
from allocscope.bench.kinds.process.command import TargetError, check_command, finish_run, label
from allocscope.bench.kinds.process.watch import Watch
from allocscope.bench.kinds.workload.runner import Interrupted
from allocscope.bench.plan import Service
from allocscope.bench.record import RunRecord
from allocscope.bench.results import MB, settle_key
from allocscope.bench.variants import Variant

HOST = "127.0.0.1"
SPAWN_SETTLE = 0.5  # after ready: let a forking server start its workers before proving
PER_10K = 10_000
# What counts as noise, not growth: a fit whose ~95 % interval stays below these is flat.
NOISE_MIB_PER_10K = 0.1
NOISE_MIB_PER_HOUR = 2.0


def check(opts: Service) -> None:
    """Everything that can be checked before the first run (TargetError: exit 3)."""
    check_command(opts.argv(1))
    if opts.load_cmd:
        check_command(shlex.split(opts.load_cmd.replace("{url}", f"http://{HOST}:1")))
    try:
        requests(opts)
    except load.LoadError as e:
        raise TargetError(str(e)) from None


def requests(opts: Service) -> list[load.Request]:
    return list(_requests(opts.requests_file, opts.url))


@functools.cache
def _requests(requests_file: str | None, url: str) -> tuple[load.Request, ...]:
    """Read once per session (check() reads it first), not per load of every run."""
    if requests_file:
        return tuple(load.read_requests(requests_file))
    return tuple(load.single(url))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _status(port: int, path: str) -> int | None:
    """The status GET ``path`` answers, or None while nothing answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class _Phases:
    """The run's clock: tick the tree every ``interval`` while waiting for something."""

    def __init__(self, watch: Watch, interval: float) -> None:
        self.watch = watch
        self.interval = interval

    def wait(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Tick for ``seconds`` or until ``until()``; False if the server exited first."""
        end = time.monotonic() + seconds
        while True:
            self.watch.tick()
            if self.watch.exited():
                return False
            if (until is not None and until()) or time.monotonic() >= end:
                return True
            time.sleep(min(self.interval, max(0.0, end - time.monotonic())))


def _wait_ready(watch: Watch, phases: _Phases, port: int, opts: Service) -> str | None:
    """None when ready; else why not. A 404 is a wrong path: TargetError (exit 3)."""
    deadline = time.monotonic() + opts.ready_timeout
    while time.monotonic() < deadline:
        status = _status(port, opts.ready)
        if status is not None and 200 <= status < 300:
            return None
        if status == 404:
            raise TargetError(f"--ready {opts.ready} answered 404 Not Found: is the path right?")
        if not phases.wait(0.1):
            return f"the server exited with status {_code(watch)} before it was ready"
    elsewhere = [a for a in listening.listening(watch.tree.names) if a[1] != port]
    if elsewhere:
        where = ", ".join(f"{host}:{p}" for host, p in elsewhere)
        return (
            f"the server listens on {where}, not on port {port}: put {{port}} in the --serve"
            " command where the server takes its port"
        )
    return f"the server was not ready within {opts.ready_timeout:g} s (GET {opts.ready})"


def _code(watch: Watch) -> int | None:
    watch.stop(grace=0.1)
    return watch.exit_code


class _Growth:
    """RSS against requests and against time during the load, fitted on the fly."""

    def __init__(self) -> None:
        self.per_requests = tree.Fit()
        self.per_time = tree.Fit()

    def add(self, requests: int | None, seconds: float, rss: int) -> None:
        mib = rss / MB
        if requests is not None:
            self.per_requests.add(requests / PER_10K, mib)
        self.per_time.add(seconds / 3600, mib)

    def fits(self) -> Growth:
        return Growth(
            per_10k_requests=_fit(self.per_requests, NOISE_MIB_PER_10K),
            per_hour=_fit(self.per_time, NOISE_MIB_PER_HOUR),
        )


def _fit(fit: tree.Fit, noise: float) -> Fit | None:
    found = fit.slope()
    if found is None:
        return None
    slope, err = found
    return Fit(round(slope, 4), round(err, 4), fit.n, tree.verdict(slope, err, noise))


def _progress(variant: Variant, t: float, total: float | None, done: int | None, rss: int) -> None:
    of = f"/{total:.0f}" if total else ""
    reqs = f", {done} requests" if done is not None else ""
    print(
        f"  {variant.name}: load {t:.0f}{of} s{reqs}, tree RSS {rss / MB:.1f} MiB",
        file=sys.stderr,
        flush=True,
    )


def run_service(
    opts: Service,
    variant: Variant,
    repeat: int,
    *,
    interval: float,
    settle: tuple[float, ...],
    save: Callable[[RunRecord], None] | None = None,
    quiet: bool = False,
) -> RunRecord:
    """One run of the service; ``save(partial)`` keeps a long load's figures as it goes."""
    return _ServiceRun(opts, variant, repeat, interval, settle, save, quiet).run()


class _Ended(Exception):
    """The run cannot go on (the server died, never got ready, is not on the variant):
    its reasons are the run's failures, not an error of allocscope."""

    def __init__(self, *reasons: str) -> None:
        super().__init__(*reasons)
        self.reasons = list(reasons)


class _ServiceRun:
    """One service run, phase by phase: ready, proved, warmed, loaded, settled, stopped."""

    def __init__(
        self,
        opts: Service,
        variant: Variant,
        repeat: int,
        interval: float,
        settle: tuple[float, ...],
        save: Callable[[RunRecord], None] | None,
        quiet: bool,
    ) -> None:
        self.opts, self.variant, self.repeat, self.settle = opts, variant, repeat, settle
        self.save, self.quiet = save, quiet
        self.port = free_port()
        argv = opts.argv(self.port)
        self.watch = Watch.start(variant, argv, trim_every=variant.trim_every)
        self.phases = _Phases(self.watch, interval)
        self.failures: list[str] = []
        self.growth = _Growth()
        self.argv = argv
        self.summary = LoadSummary()
        self.stopped: Stop | None = None
        self.warnings: tuple[str, ...] = ()
        self.metrics: dict[str, float] = {}
        # Only what is the same for every run (the port is not): equal params pool.
        self.params = {"kind": "service", "serve": opts.command}
        self.workload = label([a.replace(str(self.port), "{port}") for a in argv], "serve")
        self.load_started = self.last_save = time.monotonic()

    def run(self) -> RunRecord:
        try:
            try:
                self.ready()
                self.warm()
                self.load()
                self.settle_down()
                self.stop()
            except _Ended as e:
                self.failures += e.reasons
            return self.record()
        except KeyboardInterrupt as e:
            self.watch.mark("interrupted")
            self.watch.kill()
            if isinstance(e, Interrupted):  # the session keeps it with the runs done
                e.runs.append(self.record("interrupted: the figures so far are kept"))
            raise
        finally:
            if self.watch.exit_code is None:
                self.watch.kill()
            self.watch.finish()

    def record(self, *more: str) -> RunRecord:
        extra = Evidence(
            tree=self.watch.tree.trace(),
            port=self.port,
            argv=tuple(self.argv),
            growth=self.growth.fits(),
            load=self.summary,
            stop=self.stopped,
            warnings=self.warnings,
        )
        return finish_run(
            self.watch,
            self.workload,
            self.repeat,
            [*self.failures, *more],
            params=self.params,
            metrics=self.metrics,
            extra=extra,
            allow_signal=True,
        )

    def _alive(self, still: bool, when: str) -> None:
        if not still or self.watch.exited():
            raise _Ended(f"the server exited with status {_code(self.watch)} {when}")

    def ready(self) -> None:
        why = _wait_ready(self.watch, self.phases, self.port, self.opts)
        if why is not None:
            raise _Ended(why)
        self.watch.mark("ready")
        self._alive(self.phases.wait(SPAWN_SETTLE), "after it was ready")
        problems = self.watch.proof_problems()
        if problems:
            raise _Ended(*problems)

    def warm(self) -> None:
        if self.opts.warm > 0 and not self.opts.load_cmd:
            _builtin_load(
                self.opts,
                self.port,
                self.phases,
                duration=self.opts.warm,
                count=None,
                starting=lambda: self.watch.mark("warmup_start"),
            )
            self._alive(True, "during warm-up")

    def _starting(self) -> None:
        self.load_started = self.last_save = time.monotonic()
        self.watch.mark("load_start")

    def _during(self, done: int | None) -> None:
        """Each tick of the load: the growth fit; now and then a progress line and a save."""
        last = self.watch.tree.last
        if last:
            self.growth.add(done, time.monotonic() - self.load_started, last[1])
        if time.monotonic() - self.last_save < self.opts.progress_every:
            return
        self.last_save = time.monotonic()
        if not self.quiet and last:
            t = time.monotonic() - self.load_started
            _progress(self.variant, t, self.opts.duration, done, last[1])
        if self.save is not None:
            self.save(self.record("in progress (an interrupted soak)"))

    def load(self) -> None:
        opts = self.opts
        if opts.load_cmd:
            self._starting()
            self.summary = _command_load(opts, self.port, self.phases, self._during)
        else:
            self.summary = _builtin_load(
                opts,
                self.port,
                self.phases,
                duration=opts.duration,
                count=opts.load,
                during=self._during,
                starting=self._starting,
            )
        self._alive(True, "during the load")
        end = self.watch.mark("load_end", load=replace(self.summary, output=None))
        self.load_ended = time.monotonic()
        self.metrics.update(self.summary.metrics())
        if end.rss is not None:
            self.metrics["rss_load_end"] = float(end.rss)

    def settle_down(self) -> None:
        """RSS at each --settle point after the load (the last is the retained RSS)."""
        for after in self.settle:
            wait = max(0.0, self.load_ended + after - time.monotonic())
            self._alive(self.phases.wait(wait), "while it settled")
            m = self.watch.mark("settle", after_s=after)
            if m.rss is not None:
                self.metrics[settle_key(after)] = float(m.rss)
                self.metrics["rss_retained"] = float(m.rss)

    def stop(self) -> None:
        stopped = self.watch.stop(self.opts.grace)
        self.stopped = Stop(how=str(stopped["how"]), took_s=float(stopped["took_s"]))
        self.watch.mark("stop", how=self.stopped.how, took_s=self.stopped.took_s)
        if self.stopped.how == "SIGKILL":
            self.warnings = (f"the server ignored SIGTERM for {self.opts.grace:g} s: killed",)
        if self.summary.requests == 0 and not self.opts.load_cmd:
            self.failures.append(f"no request was answered: {self.summary.errors}")


def _builtin_load(
    opts: Service,
    port: int,
    phases: _Phases,
    *,
    duration: float | None,
    count: int | None,
    during: Callable[[int | None], None] | None = None,
    starting: Callable[[], object] | None = None,
) -> LoadSummary:
    gen = load.Load(
        HOST,
        port,
        requests(opts),
        concurrency=opts.concurrency,
        procs=opts.procs,
        count=count,
        duration=duration,
    )
    try:
        gen.wait_ready()
        if starting is not None:
            starting()
        gen.go()
        while gen.running():
            if not phases.wait(phases.interval):
                gen.halt()  # the server died: the load ends now, its errors are kept
                break
            if during is not None:
                during(gen.completed())
        return gen.result().summary()
    finally:
        gen.stop()


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")


def _command_load(
    opts: Service, port: int, phases: _Phases, during: Callable[[int | None], None]
) -> LoadSummary:
    """The user's own load generator; wrk's totals are read from its output when shown."""
    assert opts.load_cmd is not None
    argv = shlex.split(opts.load_cmd.replace("{url}", f"http://{HOST}:{port}"))
    started = time.monotonic()
    out = kept.Kept()  # bounded, however much it prints
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out.fd,
            stderr=out.fd,
            start_new_session=True,
        )
    finally:
        out.started()
    limit = (opts.duration or 3600.0) * 2 + 60
    try:
        while proc.poll() is None:
            if not phases.wait(phases.interval) or time.monotonic() - started > limit:
                break
            during(None)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out.close()
    text = out.text()
    rps, total = _WRK_RPS.search(text), _WRK_TOTAL.search(text)
    return LoadSummary(
        command=tuple(argv),
        exit_code=proc.returncode,
        duration_s=round(time.monotonic() - started, 3),
        output=text[-3000:],
        rps=float(rps.group(1)) if rps else None,
        requests=int(total.group(1)) if total else None,
    )
