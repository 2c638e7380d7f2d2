"""The built-in load generator against wrk, on the same server, side by side.

    .venv/bin/python benchmarks/load_vs_wrk.py [--seconds 5] [--app service|constant]

Starts ``allocscope serve`` (1 worker, glibc) on loopback, then alternates wrk
(-t2 -c32) and allocscope's generator (32 connections; 1 and 2 processes) for the same
duration, twice each, and prints requests/s, p50, p99 and the ratio to wrk. The aim
(issue 11): at least 80 % of wrk's rate, so the generator is not the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import time

from service_common import server, wrk

from allocscope.bench import load


def ours(port: int, seconds: float, procs: int, connections: int) -> tuple[float, float, float]:
    run = load.Load(
        "127.0.0.1",
        port,
        load.single("/"),
        concurrency=connections,
        procs=procs,
        duration=seconds,
    )
    time.sleep(0.5)  # the spawned processes import and connect first
    run.go()
    s = run.result().summary()
    assert not s["error_count"], s["errors"]
    return float(s["rps"]), float(s["p50_ms"]), float(s["p99_ms"])


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--app", default="service", choices=("service", "constant"))
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print(f"loadavg before: {loadavg()}  cpus: {os.cpu_count()}")
    with server("glibc", app=args.app) as srv:
        url = srv.url("/")
        rows = []
        for _ in range(2):
            w = wrk(url, args.seconds, threads=2, connections=args.connections)
            rows.append(("wrk -t2", w.requests_per_s, w.p50_ms, w.p99_ms))
            for procs in (1, 2):
                rps, p50, p99 = ours(srv.port, args.seconds, procs, args.connections)
                rows.append((f"allocscope x{procs}", rps, p50, p99))
    base = {}
    for name, rps, _, _ in rows:
        base.setdefault(name, []).append(rps)
    wrk_rate = max(base["wrk -t2"])
    print(f"{'generator':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x wrk':>6}")
    for name, rps, p50, p99 in rows:
        print(f"{name:18} {rps:9.0f} {p50:8.2f} {p99:8.2f} {rps / wrk_rate:6.2f}")
    print(f"loadavg after: {loadavg()}")


if __name__ == "__main__":
    main()
