"""--attach round trip, and the leak-or-fragmentation figures of a glibc process.

    .venv/bin/python benchmarks/attach_cost.py [--rounds 5]

Starts a CPython (glibc malloc) that runs the `fragment` workload (default parameters),
frees everything it kept and idles; attaches N times (round trip: seize, mmap, pending
call, answer, munmap), then once with --trim. Prints held / in use / free / returned.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from allocscope.inspect.attach import attach

TARGET = """\
import time
from allocscope.bench.workloads import fragment
kept = fragment.run(fragment.DEFAULTS)
del kept
print("ready", flush=True)
while True:
    time.sleep(0.5)
"""


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:7.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with open("/proc/loadavg", encoding="ascii") as f:
        print(f"load average: {f.read().strip()}")
    target = subprocess.Popen([sys.executable, "-c", TARGET], stdout=subprocess.PIPE)
    try:
        assert target.stdout is not None and target.stdout.readline() == b"ready\n"
        trips = [attach(target.pid).round_trip_seconds for _ in range(args.rounds)]
        report = attach(target.pid, trim=True)
    finally:
        target.kill()
        target.wait()
    v, t = report.verdict, report.trim
    print(f"attach round trip, median of {args.rounds}: {statistics.median(trips) * 1000:.0f} ms"
          f" (min {min(trips) * 1000:.0f}, max {max(trips) * 1000:.0f})")  # fmt: skip
    print(f"verdict: {v.sentence}")
    print(f"held (anonymous RSS)        {mib(v.held_bytes)}")
    print(f"in use (mallinfo2)          {mib(v.in_use_bytes)}")
    print(f"free, kept by glibc         {mib(v.free_held_bytes)}")
    if t is not None:
        print(f"--trim: {t.action}")
        print(f"RSS before / after trim     {mib(t.rss_before_bytes)} / {mib(t.rss_after_bytes)}")
        print(f"returned by trim            {mib(t.returned_bytes)}")


if __name__ == "__main__":
    main()
