"""Workloads: each a module with DESCRIPTION, DEFAULTS and ``run(params) -> live set``.

A workload allocates for a while and returns what it still holds (its long-lived
survivors). The worker times ``run`` alone, then drops the live set and watches what the
allocator gives back. Every workload takes the same knobs (the demo's, see
``bench_alloc.py``); each reads them in its own way, documented in its module.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from allocscope.errors import AllocscopeError

# name -> module (imported only when chosen: http pulls in the service).
NAMES = ("fragment", "json", "seed", "http")
DEFAULT_SET = ("fragment", "json", "seed")


class WorkloadError(AllocscopeError):
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
    """The workload module called ``name``, or a user's ``module:function``."""
    if ":" in name:
        return _callable(name)
    if name not in NAMES:
        raise WorkloadError(
            f"unknown workload {name!r}; choose from {', '.join(NAMES)} or module:function"
        )
    return importlib.import_module(f"allocscope.bench.workloads.{name}")


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
CALLABLE_DEFAULTS = Params(threads=1, iters=1, size=1, keep=1, rounds=1)


def check_callable(name: str) -> str:
    """``module:function`` if the module can be found (from the current directory too),
    without running it: the user's code runs in the benchmark child only."""
    module, _, function = name.partition(":")
    if not _DOTTED.match(module) or not _DOTTED.match(function) or "." in function:
        raise WorkloadError(f"workload {name!r}: expected module:function, e.g. myjob:build")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does in the child
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise WorkloadError(f"workload {name!r}: cannot find module {module!r}: {e}") from None
    if found is None:
        raise WorkloadError(
            f"workload {name!r}: no module named {module!r} (on PYTHONPATH or here)"
        )
    return name


def _callable(name: str) -> ModuleType:
    """A shim module whose ``run`` calls the user's function; it returns its live set."""
    check_callable(name)
    module_name, _, function = name.partition(":")
    shim = ModuleType(f"allocscope.bench.workloads.user[{name}]")
    shim.DESCRIPTION = f"the user's callable {name}: allocates, returns its live set"  # type: ignore[attr-defined]
    shim.DEFAULTS = CALLABLE_DEFAULTS  # type: ignore[attr-defined]

    def run(params: Params) -> Any:
        module = importlib.import_module(module_name)
        fn = getattr(module, function, None)
        if not callable(fn):
            raise WorkloadError(f"workload {name!r}: {module_name}.{function} is not callable")
        return fn()

    shim.run = run  # type: ignore[attr-defined]
    return shim


def defaults(name: str) -> Params:
    if ":" in name:
        check_callable(name)
        return CALLABLE_DEFAULTS
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
