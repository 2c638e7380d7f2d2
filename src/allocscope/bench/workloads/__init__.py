"""Workloads: each a module with DESCRIPTION, DEFAULTS and ``run(params) -> live set``.

A workload allocates for a while and returns what it still holds (its long-lived
survivors). The worker times ``run`` alone, then drops the live set and watches what the
allocator gives back. Every workload takes the same knobs (the demo's, see
``bench_alloc.py``); each reads them in its own way, documented in its module.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# name -> module (imported only when chosen: http pulls in the service).
NAMES = ("fragment", "json", "seed", "http")
DEFAULT_SET = ("fragment", "json", "seed")


class WorkloadError(ValueError):
    """An unknown workload or invalid parameters (bad input: exit 3 or a usage error)."""


@dataclass(frozen=True)
class Params:
    threads: int  # worker threads
    iters: int  # operations per thread per round
    size: int  # bytes: the string size (seed), the largest string (fragment), ...
    keep: int  # keep one in ``keep`` allocations alive until the end (the survivors)
    rounds: int
    seed: int = 1234  # fixed: every run of a workload allocates the same sizes

    def __post_init__(self) -> None:
        for field in ("threads", "iters", "size", "keep", "rounds"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WorkloadError(f"{field} must be a positive integer, not {value!r}")

    def scaled(self, scale: float) -> Params:
        """``iters`` times ``scale`` (at least 1); the other knobs stay."""
        check_scale(scale)
        return dataclasses.replace(self, iters=max(1, round(self.iters * scale)))

    def replace(self, **changes: Any) -> Params:
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as e:
            raise WorkloadError(str(e)) from None

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def check_scale(scale: float) -> float:
    if not scale > 0:  # also refuses NaN
        raise WorkloadError(f"scale must be greater than 0, not {scale!r}")
    return scale


def load(name: str) -> ModuleType:
    """The workload module called ``name``."""
    if name not in NAMES:
        raise WorkloadError(f"unknown workload {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"allocscope.bench.workloads.{name}")


def defaults(name: str) -> Params:
    defaults: Params = load(name).DEFAULTS
    return defaults


def in_threads(params: Params, body: Callable[[int, list[Any]], None]) -> list[Any]:
    """Run ``body(index, keep)`` on ``params.threads`` threads; return all they kept."""
    kept: list[list[Any]] = [[] for _ in range(params.threads)]
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            body(i, kept[i])
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(params.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return kept
