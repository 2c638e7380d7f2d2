"""Throughput and latency of GET / against a constant-body app on the same granian config.

For each allocator (glibc, jemalloc preloaded), in one run: wrk -t2 -c32 for a bounded time
against the constant app, then against the service, on loopback, alternating for several
rounds; prints req/s, p50 and p99 latency per run and the median of the per-round ratios
service/constant (the aim is >= 0.8). A shared 2-core machine is noisy: each ratio compares
two runs made seconds apart, and the median discards the outliers. Beside it, the server's
own CPU time per request (worker and granian's main process, user + system, read from
outside with psutil): other load on the machine stretches wall time far more than it does
this, so the CPU ratio constant/service says how much more GET / costs even when req/s
cannot be trusted.

    .venv/bin/python benchmarks/service_throughput.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics

import psutil
from service_common import describe, server, wrk


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (granian's main process, worker)."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="each measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per pair")
    parser.add_argument("--variants", nargs="+", default=["glibc", "jemalloc"])
    args = parser.parse_args()
    print(f"wrk -t2 -c32 -d{args.seconds}s --latency, 1 worker, 5 threads, loopback")
    print(
        f"{'allocator':<34} {'app':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10}"
    )
    summary = []
    for variant in args.variants:
        ratios, cpu_ratios = [], []
        rates: dict[str, list[float]] = {"constant": [], "service": []}
        costs: dict[str, list[float]] = {"constant": [], "service": []}
        for _ in range(args.rounds):  # alternate, so drift hits both sides alike
            for app in ("constant", "service"):
                with server(variant, app) as s:
                    label = describe(s.url("/")) if app == "service" else variant
                    wrk(s.url("/"), 1)  # warm-up
                    before = cpu_seconds(s.proc.pid)
                    r = wrk(s.url("/"), args.seconds)
                    cost = (cpu_seconds(s.proc.pid) - before) / r.requests * 1e6
                    if r.errors:
                        raise SystemExit(f"{app} under {variant}: {r.errors} errors")
                rate, p50, p99 = r.requests_per_s, r.p50_ms, r.p99_ms
                print(f"{label:<34} {app:<9} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f} {cost:>10.1f}")
                rates[app].append(r.requests_per_s)
                costs[app].append(cost)
            ratios.append(rates["service"][-1] / rates["constant"][-1])
            cpu_ratios.append(costs["constant"][-1] / costs["service"][-1])
        summary.append((variant, rates, ratios, costs, cpu_ratios))
    print()
    for variant, rates, ratios, costs, cpu_ratios in summary:
        service, constant = (statistics.median(rates[a]) for a in ("service", "constant"))
        print(
            f"{variant}: GET / {service:.0f} req/s vs constant {constant:.0f} req/s (medians); "
            f"ratio per round {' '.join(f'{x:.2f}' for x in ratios)}, "
            f"median {statistics.median(ratios):.2f}"
        )
        c_service, c_constant = (statistics.median(costs[a]) for a in ("service", "constant"))
        per_round = " ".join(f"{x:.2f}" for x in cpu_ratios)
        print(
            f"{variant}: server CPU per request {c_service:.1f} us vs constant "
            f"{c_constant:.1f} us (medians); ratio constant/service per round {per_round}, "
            f"median {statistics.median(cpu_ratios):.2f}"
        )


if __name__ == "__main__":
    main()
