"""The time axis of retained memory: RSS after freeing, read at several settle points.

    .venv/bin/python benchmarks/bench_decay.py [--threads 1,2,4,8] [--settle 0.5,2,5,11]

Runs the ``fragment`` workload under glibc, default jemalloc (10 s decay), the demo's and
the tuned jemalloc, once per thread count, and prints the RSS each variant still holds
above its starting point at every settle reading. Figures, not a test: the DESIGN notes
measured glibc holding ~330 MB where tuned jemalloc was back to ~14 MB within 2 s and
default jemalloc held ~414 MB until its 10 s decay ran.
"""

from __future__ import annotations

import argparse

from allocscope.bench import variants, workloads
from allocscope.bench.kinds.workload.runner import Runner, RunSpec
from allocscope.bench.results import MB, settle_key

NAMES = ("glibc", "jemalloc", "jemalloc-demo", "jemalloc-tuned")


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,4", help="thread counts (default 1,4)")
    parser.add_argument("--settle", default="0.5,2,5,11", help="seconds after freeing")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    settle = floats(args.settle)
    chosen = [v for v in variants.select(list(NAMES)) if v.available]
    base = workloads.defaults("fragment").scaled(args.scale)
    specs = [
        RunSpec(v, "fragment", base.replace(threads=int(t)), settle, 1, timeout=60 + settle[-1])
        for t in args.threads.split(",")
        for v in chosen
    ]
    runs = Runner().run(specs)
    head = ["threads", "variant", "peak", "freed", *(f"+{s:g}s" for s in settle)]
    print("  ".join(f"{h:>14}" for h in head), "  (MiB above the start)")
    for spec, run in zip(specs, runs, strict=True):
        if not run.ok:
            print(f"{spec.params.threads:>14}  {spec.variant.name:>14}  FAILED: {run.failures}")
            continue
        m = run.metrics
        keys = ["rss_peak", "rss_freed", *(settle_key(s) for s in settle)]
        cells = [f"{(m[k] - m['rss_before']) / MB:14.1f}" for k in keys]
        print(f"{spec.params.threads:>14}  {spec.variant.name:>14}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
