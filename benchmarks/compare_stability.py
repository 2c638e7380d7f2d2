"""How far can a comparison be trusted? Runs `allocscope compare` twice (or reads results
files), then prints each run's duration and load, the CV of CPU time per variant and
workload, and every verdict that flipped between the runs.

    .venv/bin/python benchmarks/compare_stability.py                 # two default compares
    .venv/bin/python benchmarks/compare_stability.py a/results.json b/results.json
    .venv/bin/python benchmarks/compare_stability.py -- -w fragment --repeats 8  # compare flags
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from allocscope.bench.analysis import stats
from allocscope.bench.results import Results, load


def run_compare(out: str, flags: list[str]) -> tuple[float, list[float], list[float]]:
    before = list(os.getloadavg())
    start = time.monotonic()
    cmd = [sys.executable, "-m", "allocscope", "compare", "-q", "--out", out, *flags]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start, before, list(os.getloadavg())


def cv_table(results: Results) -> list[str]:
    lines = []
    for workload in results.workloads():
        cells = []
        for variant in results.variant_names():
            cv = stats.cv(results.values(workload, variant, "cpu_s"))
            cells.append(f"{variant} {cv:.1%}" if cv is not None else f"{variant} -")
        lines.append(f"  cpu_s CV, {workload}: " + ", ".join(cells))
    return lines


def verdicts(results: Results) -> dict[tuple[str, str, str], str]:
    return {(c["workload"], c["variant"], c["metric"]): c["verdict"] for c in results.comparisons()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", help="results.json files (default: run twice)")
    args, flags = parser.parse_known_args()
    flags = [f for f in flags if f != "--"]
    paths = list(args.results)
    if not paths:
        tmp = tempfile.mkdtemp(prefix="allocscope-stability-")
        for i in range(2):
            out = os.path.join(tmp, f"run{i + 1}")
            took, before, after = run_compare(out, flags)
            print(
                f"run {i + 1}: {took:.1f} s, load {before[0]:.2f} before, {after[0]:.2f} after "
                f"(/proc/loadavg), {out}"
            )
            paths.append(os.path.join(out, "results.json"))
    loaded = [load(p) for p in paths]
    for path, results in zip(paths, loaded, strict=True):
        session = results.session
        print(
            f"{path}: {session.duration_s} s, "
            f"{session.busy_runs} of {session.measured_runs} runs busy"
        )
        print("\n".join(cv_table(results)))
    first, *rest = (verdicts(r) for r in loaded)
    for i, other in enumerate(rest, start=2):
        flipped = [(k, first[k], other[k]) for k in first if k in other and first[k] != other[k]]
        sig = [f for f in flipped if "significant" in f[1:]]
        print(
            f"run 1 vs run {i}: {len(flipped)} of {len(first)} verdicts differ, "
            f"{len(sig)} of them involve 'significant'"
        )
        for (workload, variant, metric), a, b in flipped:
            print(f"  {workload} {variant} {metric}: {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
