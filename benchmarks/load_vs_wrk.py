"""The built-in load generator against wrk, on the same server, side by side.

    .venv/bin/python benchmarks/load_vs_wrk.py [--seconds 5] [--rounds 3] [--app service]

Starts ``allocscope serve`` (1 worker, glibc) on loopback, then alternates wrk (-t2 -c32)
and allocscope's generator (32 connections; 1 and 2 processes) for the same duration,
``--rounds`` times, and prints requests/s, p50, p99, the generator's own CPU time per
request (its processes' user + system, from getrusage of the reaped children) and the
ratio to the wrk run just before it. The aim (issue 11): at least 80 % of wrk's rate, so
the generator is not the bottleneck. On a busy machine the rates move with the
neighbours; CPU per request moves much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from service_common import server, wrk

from allocscope.bench.kinds.process import load


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ours(port: int, seconds: float, procs: int, connections: int) -> tuple[float, ...]:
    run = load.Load(
        "127.0.0.1", port, load.single("/"), concurrency=connections, procs=procs,
        duration=seconds,
    )  # fmt: skip
    run.wait_ready()
    cpu = children_cpu()
    run.go()
    s = run.result().summary()
    run.stop()  # joins (reaps) the load processes: their CPU is in RUSAGE_CHILDREN now
    assert not s.error_count, s.errors
    us = (children_cpu() - cpu) / max(1, s.requests or 0) * 1e6
    return float(s.rps or 0), float(s.p50_ms or 0), float(s.p99_ms or 0), us


def theirs(url: str, seconds: int, connections: int) -> tuple[float, ...]:
    cpu = children_cpu()
    w = wrk(url, seconds, threads=2, connections=connections)
    us = (children_cpu() - cpu) / max(1, w.requests) * 1e6
    return w.requests_per_s, w.p50_ms, w.p99_ms, us


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--app", default="service", choices=("service", "constant"))
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print(f"loadavg before: {loadavg()}  cpus: {os.cpu_count()}")
    rows: list[tuple[str, tuple[float, ...], float]] = []
    ratios: dict[str, list[float]] = {"allocscope x1": [], "allocscope x2": []}
    with server("glibc", app=args.app) as srv:
        for _ in range(args.rounds):
            w = theirs(srv.url("/"), args.seconds, args.connections)
            rows.append(("wrk -t2", w, 1.0))
            for procs in (1, 2):
                name = f"allocscope x{procs}"
                o = ours(srv.port, args.seconds, procs, args.connections)
                ratios[name].append(o[0] / w[0])
                rows.append((name, o, o[0] / w[0]))
                time.sleep(0.5)
    print(f"{'generator':15} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu us/req':>10} "
          f"{'x wrk':>6}")  # fmt: skip
    for name, (rps, p50, p99, us), ratio in rows:
        print(f"{name:15} {rps:8.0f} {p50:7.2f} {p99:7.2f} {us:10.1f} {ratio:6.2f}")
    for name, values in ratios.items():
        print(f"{name}: median {statistics.median(values):.2f}x the wrk run before it")
    print(f"loadavg after: {loadavg()}")


if __name__ == "__main__":
    main()
