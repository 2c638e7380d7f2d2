"""allocscope: the allocator and FIPS crypto a Python process really runs on.

The library, in a few names (each imported on first use, so ``import allocscope`` stays
cheap for the launcher):

- ``snapshot()`` -> ``Snapshot``: allocator, heap statistics, memory, FIPS, runtime;
- ``verify(expectations=None)`` -> ``Verdict``: the checks of ``allocscope verify``;
- ``Expectations``, ``Check``: what ``verify`` holds the process to, and each result;
- ``compare(variants, workloads=... | command=... | service=Service(...))`` -> ``Results``:
  ``allocscope compare`` as a function (needs the ``bench`` extra), typed runs with their
  metrics and proof (see ``allocscope.bench.api``).

Fork safety is in ``allocscope.forksafe``, Prometheus in ``allocscope.prometheus``, WSGI
and ASGI apps to mount in ``allocscope.web``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the real names; at run time they load on first use
    from allocscope.api import Check, Expectations, Snapshot, Verdict, snapshot, verify
    from allocscope.bench.api import Service, compare
    from allocscope.bench.results import Results

__version__ = "0.1.0"

__all__ = [
    "Check",
    "Expectations",
    "Results",
    "Service",
    "Snapshot",
    "Verdict",
    "__version__",
    "compare",
    "snapshot",
    "verify",
]
_BENCH = {"compare": "allocscope.bench.api", "Service": "allocscope.bench.api"}
_BENCH["Results"] = "allocscope.bench.results"


def __getattr__(name: str) -> object:
    if name in ("Check", "Expectations", "Snapshot", "Verdict", "snapshot", "verify"):
        import allocscope.api as _api

        return getattr(_api, name)
    if name in _BENCH:
        import importlib

        return getattr(importlib.import_module(_BENCH[name]), name)
    raise AttributeError(name)
