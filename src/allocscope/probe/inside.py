"""What ``inspect --attach`` runs inside a Python process: the probe plus Python's view.

Shipped as source into the target (see inspect.payload); it imports only the probe and
the standard library, starts no thread and leaves no file open.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from allocscope.probe import allocator, purge, runtime, snapshot


def python_view() -> dict[str, Any]:
    """CPython's own counters: blocks, gc generations, tracemalloc when it is tracing."""
    import _tracemalloc  # built in: is_tracing() costs nothing when off

    tracing = bool(_tracemalloc.is_tracing())
    traced = _tracemalloc.get_traced_memory() if tracing else None
    return {
        "version": sys.version.split()[0],
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_counts": list(gc.get_count()),
        "gc_collections": [s["collections"] for s in gc.get_stats()],
        "gc_tracked_objects": len(gc.get_objects()),
        "tracemalloc_tracing": tracing,
        "tracemalloc_current_bytes": traced[0] if traced else None,
        "tracemalloc_peak_bytes": traced[1] if traced else None,
    }


def run(trim: bool) -> dict[str, Any]:
    """The full snapshot and Python's view; with ``trim``, the allocator's release and after."""
    info = allocator.detect()
    interpreter = runtime.read(packages=False)  # importlib.metadata would pull in dozens
    result: dict[str, Any] = {
        "snapshot": snapshot.snapshot(allocator=info, runtime=interpreter).to_dict(),
        "python": python_view(),
    }
    if trim:
        result["trim_action"] = purge.release(info)
        after = snapshot.snapshot(allocator=info, runtime=interpreter)
        result["after_trim"] = after.to_dict()
    return result
