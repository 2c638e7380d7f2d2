"""allocscope: the allocator and FIPS crypto a Python process really runs on.

The library, in a few names (each imported on first use, so ``import allocscope`` stays
cheap for the launcher):

- ``snapshot()`` -> ``Snapshot``: allocator, heap statistics, memory, FIPS, runtime;
- ``verify(expectations=None)`` -> ``Verdict``: the checks of ``allocscope verify``;
- ``Expectations``, ``Check``: what ``verify`` holds the process to, and each result.

Fork safety is in ``allocscope.forksafe``, Prometheus in ``allocscope.prometheus``, WSGI
and ASGI apps to mount in ``allocscope.web``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the real names; at run time they load on first use
    from allocscope.api import Check, Expectations, Snapshot, Verdict, snapshot, verify

__version__ = "0.1.0"

__all__ = ["Check", "Expectations", "Snapshot", "Verdict", "__version__", "snapshot", "verify"]


def __getattr__(name: str) -> object:
    if name in ("Check", "Expectations", "Snapshot", "Verdict", "snapshot", "verify"):
        import allocscope.api as _api

        return getattr(_api, name)
    raise AttributeError(name)
