"""seed: the Ruby demo's churn loop, ported literally (kept for parity with the demo).

Per thread and round: allocate ``iters`` strings of ``size`` bytes, keep every
``keep``-th, then drop them all and collect. Refcounting frees each string at once, so in
CPython this shows almost no allocator effect (DESIGN.md): compare with ``fragment``.
Like the demo, it warms up in-process before the measured work.
"""

from __future__ import annotations

import gc
from typing import Any

from allocscope.bench.workloads import Params, in_threads

DESCRIPTION = "the demo's churn loop: 1 KiB strings, every 17th kept per round, then freed"
DEFAULTS = Params(threads=4, iters=200_000, size=1024, keep=17, rounds=3)


def _churn(iters: int, size: int, keep_every: int) -> None:
    keep = []
    for i in range(iters):
        s = "x" * size
        if i % keep_every == 0:
            keep.append(s)
    keep.clear()


def warmup(params: Params) -> None:
    gc.collect()
    for _ in range(2):
        _churn(params.iters // 4, params.size, params.keep)


def run(params: Params) -> list[Any]:
    def worker(_index: int, _keep: list[Any]) -> None:
        for _ in range(params.rounds):
            _churn(params.iters, params.size, params.keep)
            gc.collect()

    return in_threads(params, worker)  # nothing survives: the demo frees all each round
