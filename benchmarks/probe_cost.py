"""What each probe read costs in this process: why the service detects once at start-up.

    .venv/bin/python benchmarks/probe_cost.py
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 .venv/bin/python benchmarks/probe_cost.py

Prints microseconds per call (best of 5 rounds of N calls), all measured in one run.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from allocscope.probe import allocator, fips, glibc, memory, runtime, snapshot


def cost(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    detected = allocator.detect()
    probed = fips.probe()
    interpreter = runtime.read()
    rows = [
        ("allocator.detect()  (maps, dlsym, dladdr)", lambda: allocator.detect(), 200),
        ("fips.probe()        (libcrypto, MD5 paths)", lambda: fips.probe(), 200),
        ("memory.read(rollup=False)  (status)", lambda: memory.read(rollup=False), 2000),
        ("memory.read()       (status + smaps_rollup)", lambda: memory.read(), 500),
        ("runtime.read()      (package versions)", lambda: runtime.read(), 200),
        ("glibc.heap()        (mallinfo2, malloc_info)", lambda: glibc.heap(), 500),
        ("snapshot() from scratch", lambda: snapshot.snapshot(), 100),
        (
            "snapshot() with start-up facts passed in",
            lambda: snapshot.snapshot(allocator=detected, fips=probed, runtime=interpreter),
            200,
        ),
    ]
    print(f"allocator: {detected.label}")
    for label, fn, number in rows:
        print(f"{label:<46} {cost(fn, number):9.1f} us")


if __name__ == "__main__":
    main()
