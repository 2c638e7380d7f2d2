#!/usr/bin/env python3
"""Allocator churn benchmark, compatible with the demo: one JSON object on stdout.

    BENCH_WORKLOAD=fragment BENCH_THREADS=4 python3 bench_alloc.py > glibc.json
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python3 bench_alloc.py > jema.json
    jq -s '[{alloc:"glibc",rss:.[0].rss_delta_mb,time:.[0].time_s},
            {alloc:"jemalloc",rss:.[1].rss_delta_mb,time:.[1].time_s}]' glibc.json jema.json

Knobs: BENCH_WORKLOAD (fragment, json, seed), BENCH_THREADS, BENCH_ITERS, BENCH_STR,
BENCH_KEEP, BENCH_ROUNDS, BENCH_SLEEP_AFTER (see allocscope.bench.demo). Needs only the
standard library and allocscope (installed, vendored on PYTHONPATH, or this checkout).
"""

from __future__ import annotations

import os
import sys

try:
    from allocscope.bench import demo
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    from allocscope.bench import demo

if __name__ == "__main__":
    sys.exit(demo.main())
