"""fragment: mixed lifetimes and sizes above pymalloc's limit, across threads.

Each thread allocates ``iters`` strings per round, of sizes between 100 bytes and
``size`` (most above pymalloc's 512 bytes, so they go to the C allocator), and keeps one
in ``keep`` of them alive to the end, scattered among short-lived neighbours that are
freed in batches. This is what makes glibc keep memory after everything is freed
(DESIGN.md: ~330 MB held by glibc where tuned jemalloc returned to ~14 MB).
"""

from __future__ import annotations

import random
from typing import Any

from allocscope.bench.workloads import Params, in_threads

DESCRIPTION = "mixed-lifetime strings of 100 B to 6 KB over 4 threads, 1 in 20 kept"
DEFAULTS = Params(threads=4, iters=150_000, size=6000, keep=20, rounds=2)

SMALLEST = 100
BATCH = 1000  # short-lived strings are dropped this many at a time
CYCLE = 4096  # sizes and lifetimes are drawn once per thread, then cycled


def run(params: Params) -> list[Any]:
    def churn(index: int, keep: list[Any]) -> None:
        rng = random.Random(params.seed + index)
        sizes = [rng.randint(SMALLEST, max(SMALLEST, params.size)) for _ in range(CYCLE)]
        survives = [rng.randrange(params.keep) == 0 for _ in range(CYCLE)]
        n = 0
        for _ in range(params.rounds):
            batch: list[str] = []
            for _ in range(params.iters):
                s = "x" * sizes[n % CYCLE]
                if survives[n % CYCLE]:
                    keep.append(s)
                else:
                    batch.append(s)
                    if len(batch) >= BATCH:
                        batch = []
                n += 1

    return in_threads(params, churn)
