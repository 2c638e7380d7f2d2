"""Throughput and latency of GET / against a constant-body app on the same granian config.

For each allocator (glibc, jemalloc preloaded), in one run: wrk -t2 -c32 for a bounded time
against the constant app, then against the service, on loopback; prints req/s, p50 and p99
latency and the ratio service/constant (the aim is >= 0.8).

    .venv/bin/python benchmarks/service_throughput.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse

from service_common import describe, server, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="each measured wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per pair")
    parser.add_argument("--variants", nargs="+", default=["glibc", "jemalloc"])
    args = parser.parse_args()
    print(f"wrk -t2 -c32 -d{args.seconds}s --latency, 1 worker, 5 threads, loopback")
    print(f"{'allocator':<34} {'app':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    summary = []
    for variant in args.variants:
        best: dict[str, float] = {}
        for _ in range(args.rounds):  # alternate, so drift hits both sides alike
            for app in ("constant", "service"):
                with server(variant, app) as s:
                    label = describe(s.url("/")) if app == "service" else variant
                    wrk(s.url("/"), 1)  # warm-up
                    r = wrk(s.url("/"), args.seconds)
                    if r.errors:
                        raise SystemExit(f"{app} under {variant}: {r.errors} errors")
                rate, p50, p99 = r.requests_per_s, r.p50_ms, r.p99_ms
                print(f"{label:<34} {app:<9} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")
                best[app] = max(best.get(app, 0.0), r.requests_per_s)
        summary.append((variant, best["service"], best["constant"]))
    print()
    for variant, service, constant in summary:
        print(
            f"{variant}: GET / {service:.0f} req/s vs constant {constant:.0f} req/s "
            f"(best of {args.rounds}): ratio {service / constant:.2f}"
        )


if __name__ == "__main__":
    main()
