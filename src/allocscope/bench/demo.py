"""The demo-compatible benchmark behind ``bench_alloc.py``: one process, one JSON object.

It honours the Ruby demo's knobs and prints at least the demo's keys, so the demo's
comparison (``jq -s '[{alloc:"glibc",rss:.[0].rss_delta_mb,...}]' glibc.json jema.json``)
works unchanged, plus the allocator this process really runs on. Standard library and
allocscope only: the runtime image has neither matplotlib nor rich.

Knobs (environment):

- ``BENCH_WORKLOAD``: fragment (default: the one that shows what glibc keeps), json, seed
- ``BENCH_THREADS``, ``BENCH_ITERS`` (per thread and round), ``BENCH_STR`` (string size;
  the largest one for fragment), ``BENCH_KEEP`` (keep one in N; a fraction like 0.05 is
  read as one in 20), ``BENCH_ROUNDS``: default to the workload's own
- ``BENCH_SLEEP_AFTER``: seconds to wait after everything is freed before reading
  ``rss_after_mb`` (default 2: long enough for a tuned jemalloc to return its pages)

``rss_before_mb`` is read before the work, ``rss_after_mb`` after the work, after
everything it kept is freed and after ``BENCH_SLEEP_AFTER``; ``time_s`` is the work alone.

``BENCH_SLEEP_AFTER``, ``sleep_after_s`` and ``rss_after_mb`` are the demo's names, kept so
its scripts work unchanged; allocscope's own name for the idea is *settle* (``--settle``,
and ``rss_retained`` in ``results.json``, which reads this output as its version 0).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from allocscope import exitcodes
from allocscope.bench import workloads
from allocscope.errors import AllocscopeError
from allocscope.probe import allocator, memory
from allocscope.probe.snapshot import jemalloc_report

KNOBS = {
    "BENCH_THREADS": "threads",
    "BENCH_ITERS": "iters",
    "BENCH_STR": "size",
    "BENCH_KEEP": "keep",
    "BENCH_ROUNDS": "rounds",
}
IN_PROCESS = ("fragment", "json", "seed")  # http needs a server: use allocscope compare
DEFAULT_WORKLOAD = "fragment"
DEFAULT_SETTLE = 2.0  # BENCH_SLEEP_AFTER
MB = 2**20


class KnobError(AllocscopeError):
    pass


def _int(name: str, text: str) -> int:
    try:
        value = int(text.strip())  # like Ruby's Integer(): "200_000" is fine
    except ValueError:
        raise KnobError(f"{name}={text!r}: expected a whole number") from None
    if value < 1:
        raise KnobError(f"{name}={text!r}: must be 1 or more")
    return value


def _keep(text: str) -> int:
    """One in N; a fraction (0.05) means one in round(1 / 0.05)."""
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise KnobError(f"BENCH_KEEP={text!r}: expected N (keep one in N) or a fraction") from None
    if 0 < value < 1:
        return max(1, round(1 / value))
    if value >= 1 and value == int(value):
        return int(value)
    raise KnobError(f"BENCH_KEEP={text!r}: expected N >= 1 or a fraction between 0 and 1")


def settings(env: Mapping[str, str]) -> tuple[str, workloads.Params, float]:
    """(workload, parameters, sleep after) from the environment; KnobError if invalid."""
    name = env.get("BENCH_WORKLOAD", "").strip() or DEFAULT_WORKLOAD
    if name not in IN_PROCESS:
        raise KnobError(f"BENCH_WORKLOAD={name!r}: choose from {', '.join(IN_PROCESS)}")
    changes: dict[str, int] = {}
    for knob, field in KNOBS.items():
        text = env.get(knob, "").strip()
        if text:
            changes[field] = _keep(text) if knob == "BENCH_KEEP" else _int(knob, text)
    params = workloads.defaults(name).replace(**changes)
    settle_text = env.get("BENCH_SLEEP_AFTER", "").strip()
    try:
        settle = float(settle_text) if settle_text else DEFAULT_SETTLE
    except ValueError:
        raise KnobError(f"BENCH_SLEEP_AFTER={settle_text!r}: expected seconds") from None
    if not 0 <= settle < 3600:
        raise KnobError(f"BENCH_SLEEP_AFTER={settle_text!r}: expected 0 to 3600 seconds")
    return name, params, settle


def _mb(n: int) -> float:
    return round(n / MB, 2)


def detected() -> dict[str, Any]:
    info = allocator.detect()
    out: dict[str, Any] = {
        "name": info.name,
        "version": info.version,
        "label": info.label,
        "source": info.source,
        "path": info.path,
        "warnings": list(info.warnings),
    }
    report = jemalloc_report(info)
    if report is not None and report.malloc_conf:
        out["malloc_conf_not_in_effect"] = [
            f"{k.key}: {k.reason}" for k in report.malloc_conf if not k.in_effect
        ]
    return out


def measure(name: str, params: workloads.Params, settle: float) -> dict[str, Any]:
    module = workloads.load(name)
    warmup = getattr(module, "warmup", None)
    if warmup is not None:
        warmup(params)
    gc.collect()
    before = memory.read(rollup=False).rss_bytes
    t0 = time.perf_counter()
    held = module.run(params)
    time_s = time.perf_counter() - t0
    at_end = memory.read(rollup=False).rss_bytes
    del held
    gc.collect()
    time.sleep(settle)
    after = memory.read(rollup=False)
    return {
        "workload": name,
        "threads": params.threads,
        "iters_per_thread": params.iters,
        "str_size": params.size,
        "keep_ratio": params.keep,
        "rounds": params.rounds,
        "sleep_after_s": settle,
        "time_s": round(time_s, 3),
        "rss_before_mb": _mb(before),
        "rss_after_mb": _mb(after.rss_bytes),
        "rss_delta_mb": _mb(after.rss_bytes - before),
        "rss_work_end_mb": _mb(at_end),
        "rss_peak_mb": _mb(after.peak_rss_bytes),
        "ld_preload": os.environ.get("LD_PRELOAD"),
        "malloc_conf": os.environ.get("MALLOC_CONF"),
        "python_version": sys.version.split()[0],
        "allocator": detected(),
    }


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        name, params, settle = settings(os.environ if env is None else env)
    except (KnobError, workloads.WorkloadError) as e:
        print(f"bench_alloc: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    print(json.dumps(measure(name, params, settle), indent=2))
    return exitcodes.OK
