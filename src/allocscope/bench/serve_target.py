"""Any service, under load, per variant: start, ready, prove, warm up, load, idle, stop.

``allocscope compare --serve 'gunicorn -w 2 -b 127.0.0.1:{port} app:app' --ready /healthz
--duration 60s`` starts the user's server on a free loopback port, waits until ``--ready``
answers 2xx, proves every server process's allocator from outside, warms up, loads it
(the built-in generator, or the user's own with ``--load-cmd``), lets it idle and reads
RSS at the settle points, then stops it: SIGTERM to its process group, SIGKILL after the
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
from typing import Any

from allocscope.bench import kept, listening, load, tree
from allocscope.bench.plan import Service
from allocscope.bench.results import MB, Run
from allocscope.bench.runner import Interrupted
from allocscope.bench.target import TargetError, check_command, finish_run, label
from allocscope.bench.variants import Variant
from allocscope.bench.watch import Watch

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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, fit, noise in (
            ("mib_per_10k_requests", self.per_requests, NOISE_MIB_PER_10K),
            ("mib_per_hour", self.per_time, NOISE_MIB_PER_HOUR),
        ):
            found = fit.slope()
            if found is None:
                continue
            slope, err = found
            out[key] = {
                "slope": round(slope, 4),
                "stderr": round(err, 4),
                "points": fit.n,
                "verdict": tree.verdict(slope, err, noise),
            }
        return out


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
    save: Callable[[Run], None] | None = None,
    quiet: bool = False,
) -> Run:
    """One run of the service; ``save(partial)`` keeps a long load's figures as it goes."""
    port = free_port()
    argv = opts.argv(port)
    watch = Watch.start(variant, argv, trim_every=variant.trim_every)
    phases = _Phases(watch, interval)
    failures: list[str] = []
    growth = _Growth()
    extra: dict[str, Any] = {"port": port, "argv": argv}
    summary: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    # Only what is the same for every run (the port is not): runs with equal params pool.
    params = {"kind": "service", "serve": opts.command}
    workload = label([a.replace(str(port), "{port}") for a in argv], "serve")

    def record(extra_failures: tuple[str, ...] = ()) -> Run:
        extra["growth"] = growth.to_dict()
        extra["load"] = summary
        rss_end = watch.tree.last[1] if watch.tree.last else None
        return finish_run(
            watch,
            variant,
            workload,
            repeat,
            [*failures, *extra_failures],
            round(time.monotonic() - watch.started, 3),
            rss_end,
            params=params,
            metrics=metrics,
            extra=extra,
            allow_signal=True,
        )

    try:
        why = _wait_ready(watch, phases, port, opts)
        if why is not None:
            failures.append(why)
            return record()
        watch.mark("ready")
        if not phases.wait(SPAWN_SETTLE):
            failures.append(f"the server exited with status {_code(watch)} after it was ready")
            return record()
        problems = watch.proof_problems()
        if problems:
            failures += problems
            return record()
        if opts.warm > 0 and not opts.load_cmd:
            _builtin_load(
                opts,
                port,
                phases,
                duration=opts.warm,
                count=None,
                starting=lambda: watch.mark("warmup_start"),
            )
            if watch.exited():
                failures.append(f"the server exited with status {_code(watch)} during warm-up")
                return record()
        begun = time.monotonic()
        saved = [begun]

        def starting() -> None:
            nonlocal begun
            begun = saved[0] = time.monotonic()
            watch.mark("load_start")

        def during(done: int | None) -> None:
            if watch.tree.last:
                growth.add(done, time.monotonic() - begun, watch.tree.last[1])
            if time.monotonic() - saved[0] >= opts.progress_every:
                saved[0] = time.monotonic()
                if not quiet and watch.tree.last:
                    _progress(
                        variant, time.monotonic() - begun, opts.duration, done, watch.tree.last[1]
                    )
                if save is not None:
                    save(record(("in progress (an interrupted soak)",)))

        if opts.load_cmd:
            starting()
            summary = _command_load(opts, port, phases, during)
        else:
            summary = _builtin_load(
                opts,
                port,
                phases,
                duration=opts.duration,
                count=opts.load,
                during=during,
                starting=starting,
            )
        if watch.exited():
            failures.append(f"the server exited with status {_code(watch)} during the load")
            return record()
        end = watch.mark("load_end", **{k: v for k, v in summary.items() if k != "output"})
        load_end_t = time.monotonic()
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "requests", "error_count"):
            if isinstance(summary.get(key), int | float):
                metrics[key] = float(summary[key])
        metrics["load_s"] = float(summary.get("duration_s") or 0.0)
        if end.rss is not None:
            metrics["rss_load_end"] = float(end.rss)
        for after in settle:
            if not phases.wait(max(0.0, load_end_t + after - time.monotonic())):
                failures.append(f"the server exited with status {_code(watch)} while idle")
                return record()
            m = watch.mark("idle", after_s=after)
            if m.rss is not None:
                metrics[f"rss_idle_{after:g}"] = float(m.rss)
                metrics["rss_idle"] = float(m.rss)
        stopped = watch.stop(opts.grace)
        watch.mark("stop", **stopped)
        extra["stop"] = stopped
        if stopped["how"] == "SIGKILL":
            extra["warnings"] = [f"the server ignored SIGTERM for {opts.grace:g} s: killed"]
        if summary.get("requests") == 0 and not opts.load_cmd:
            failures.append(f"no request was answered: {summary.get('errors')}")
        return record()
    except KeyboardInterrupt as e:
        watch.mark("interrupted")
        watch.kill()
        if isinstance(e, Interrupted):  # the session keeps it with the runs done
            e.runs.append(record(("interrupted: the figures so far are kept",)))
        raise
    finally:
        if watch.exit_code is None:
            watch.kill()
        watch.finish()


def _builtin_load(
    opts: Service,
    port: int,
    phases: _Phases,
    *,
    duration: float | None,
    count: int | None,
    during: Callable[[int | None], None] | None = None,
    starting: Callable[[], object] | None = None,
) -> dict[str, Any]:
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
) -> dict[str, Any]:
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
    summary: dict[str, Any] = {
        "command": argv,
        "exit_code": proc.returncode,
        "duration_s": round(time.monotonic() - started, 3),
        "output": text[-3000:],
    }
    rps, total = _WRK_RPS.search(text), _WRK_TOTAL.search(text)
    if rps:
        summary["rps"] = float(rps.group(1))
    if total:
        summary["requests"] = int(total.group(1))
    return summary
