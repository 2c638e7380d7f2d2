"""What one Prometheus scrape of AllocscopeCollector costs, beside prometheus_client's own
ProcessCollector, under glibc and under jemalloc (each in a fresh child process).

    .venv/bin/python benchmarks/collector_cost.py [--scrapes 2000]

Per variant: the first scrape (detects allocator, FIPS, runtime once per pid), then the
best of 5 rounds of N scrapes through generate_latest (what /metrics does), and the same for
a registry holding only prometheus_client's ProcessCollector, side by side with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from allocscope import libraries

CHILD = """
import json, sys, time, timeit
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from allocscope.prometheus import AllocscopeCollector

n = int(sys.argv[1])
ours = CollectorRegistry(auto_describe=False)
ours.register(AllocscopeCollector(server=""))
theirs = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=theirs)
t0 = time.perf_counter()
body = generate_latest(ours)
first = time.perf_counter() - t0
best = lambda reg: min(timeit.repeat(lambda: generate_latest(reg), number=n, repeat=5)) / n
print(json.dumps({"first_ms": first * 1e3, "ours_us": best(ours) * 1e6,
                  "process_us": best(theirs) * 1e6, "series": body.count(b"\\n") -
                  body.count(b"\\n#")}))
"""


def variants() -> list[tuple[str, dict[str, str]]]:
    found = [("glibc", {})]
    je = libraries.find("jemalloc")
    if je:
        found.append(("jemalloc+bg", {"LD_PRELOAD": je, "MALLOC_CONF": "background_thread:true"}))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=2000, help="scrapes per round")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    with open("/proc/loadavg") as f:
        print(f"load average: {' '.join(f.read().split()[:3])} (shared machine: figures are noisy)")
    print(f"{'variant':<12} {'first scrape':>12} {'per scrape':>11} {'series':>6} "
          f"{'ProcessCollector':>16} {'ratio':>6}")  # fmt: skip
    for name, env in variants():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.scrapes)],
            env={**base, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout)
        print(
            f"{name:<12} {r['first_ms']:>9.1f} ms {r['ours_us']:>8.1f} us {r['series']:>6} "
            f"{r['process_us']:>13.1f} us {r['ours_us'] / r['process_us']:>5.1f}x"
        )


if __name__ == "__main__":
    main()
