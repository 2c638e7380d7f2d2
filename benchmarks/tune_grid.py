"""How good is tune's answer? An exhaustive grid over a small space, then tune on the same
space with two seeds: the recommendation, its gain with interval, time and runs spent,
tune's own overhead per run, the gap to the grid's best and whether the seeds agree.

The grid is one ``allocscope compare`` of every setting of the space against the baseline
(``--repeats N``); its best is the lowest objective ratio that breaks no bound, judged as
tune judges them (``Bound.broken``). The gap is read from the grid's own figures (the
recommendation's ratio in the grid minus the best ratio in the grid), so the two
measurements do not mix.

    .venv/bin/python benchmarks/tune_grid.py --space benchmarks/tune_space_small.toml \\
        --budget 6m -- -w fragment
    .venv/bin/python benchmarks/tune_grid.py --space S --objective retained -- \\
        --serve 'gunicorn -b 127.0.0.1:{port} app:app' --ready /healthz --load 500
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from typing import Any

from allocscope.bench.results import load, value
from allocscope.tune import objective, setting, space


def allocscope(*args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "allocscope", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"allocscope {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout


def kind_of(target: list[str]) -> str:
    if "--serve" in target:
        return "service"
    return "workload" if "-w" in target or "--workload" in target else "command"


def grid_ratios(path: str, kind: str, goal: str) -> dict[str, dict[str, objective.Ratio]]:
    results = load(path)
    base = "glibc"
    out: dict[str, dict[str, objective.Ratio]] = {}
    for name in results.variant_names():
        if name == base:
            continue
        runs = [r for r in results.runs if r.variant == name and r.counts]
        base_runs = [r for r in results.runs if r.variant == base and r.counts]
        figures = [goal, "throughput", *(["p99"] if kind == "service" else [])]
        for fig_name in figures:
            fig = objective.figure(kind, fig_name)
            vals = [v for r in runs if (v := value(r, fig.metric)) is not None]
            bvals = [v for r in base_runs if (v := value(r, fig.metric)) is not None]
            workload = runs[0].workload if runs else ""
            r = objective.ratio(
                fig, vals, bvals, seed=results.seed, workload=workload, variant=name
            )
            if r is not None:
                out.setdefault(name, {})[fig_name] = r
    return out


def feasible(ratios: dict[str, objective.Ratio], kind: str) -> bool:
    bounds = objective.parse_bounds(objective.DEFAULT_BOUNDS, kind, given=False)
    return not any(b.broken(ratios[b.figure.name]) for b in bounds if b.figure.name in ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="a small space file (the grid is all of it)")
    parser.add_argument("--objective", default=None)
    parser.add_argument("--repeats", type=int, default=5, help="grid runs per setting")
    parser.add_argument("--seeds", default="1,2", help="tune seeds")
    parser.add_argument("--budget", default="6m", help="tune's --budget")
    parser.add_argument("--out", help="keep the results here (default: a temporary dir)")
    parser.add_argument("target", nargs=argparse.REMAINDER, help="-- target flags")
    args = parser.parse_args()
    target = [a for a in args.target if a != "--"]
    kind = kind_of(target)
    goal = args.objective or objective.default_objective(kind)
    out = args.out or tempfile.mkdtemp(prefix="tune-grid-")
    proof = space.prove(space.load(args.space), explicit=True)
    settings = list(setting.grid(proof.space))
    settings = [s for s in settings if s.key != setting.Setting("glibc", ()).key]
    random.Random(0).shuffle(settings)
    print(f"grid: {len(settings)} settings + glibc, {args.repeats} runs each, target {target}")
    flags = ["-V", "glibc", *(f for s in settings for f in ("-V", s.spec()))]
    cmd_target = target if kind == "workload" else ["--", *target] if kind == "command" else target
    grid_s, _ = allocscope(
        "compare",
        *flags,
        "--repeats",
        str(args.repeats),
        "--no-chart",
        "-q",
        "-o",
        f"{out}/grid",
        "--seed",
        "1",
        *cmd_target,
    )
    grid = grid_ratios(f"{out}/grid/results.json", kind, goal)
    ranked = sorted(grid.items(), key=lambda kv: kv[1][goal].ratio)
    best = next((n for n, r in ranked if feasible(r, kind)), None)
    grid_runs = len(load(f"{out}/grid/results.json").runs)
    print(f"grid: {grid_runs} runs in {grid_s:.0f} s; ranked by {goal} ratio to glibc:")
    for name, r in ranked:
        shown = "  ".join(
            f"{k} x{v.ratio:.3f} [{v.low:.3f}, {v.high:.3f}] {v.verdict}" for k, v in r.items()
        )
        print(f"  {'*' if name == best else ' '} {name:<52} {shown}")
    print(f"grid best within bounds: {best}")
    answers: list[dict[str, Any]] = []
    for seed in args.seeds.split(","):
        d = f"{out}/tune-{seed}"
        took, stdout = allocscope(
            "tune",
            "--space",
            args.space,
            "--seed",
            seed,
            "--budget",
            args.budget,
            "--json",
            "-q",
            "--no-chart",
            "-o",
            d,
            *(["--objective", goal] if args.objective else []),
            *cmd_target,
        )
        doc = json.loads(stdout[stdout.index("{\n") :])
        tune = load(f"{d}/results.json").session.tune
        if tune is None:
            raise SystemExit(f"{d}/results.json: not written by allocscope tune")
        rec = doc["recommendation"]
        name = rec["name"] if rec else None
        runs = tune.runs_measured or 0
        overhead = ((tune.duration_s or 0.0) - (tune.measuring_s or 0.0)) / max(1, runs)
        gain = rec["gains"][goal] if rec else None
        gap = (
            grid[name][goal].ratio - grid[best][goal].ratio
            if name in grid and best in grid
            else None
        )
        answers.append({"seed": seed, "name": name, "runner_up": rec and rec["runner_up"]})
        print(
            f"tune seed {seed}: {took:.0f} s, {runs} runs, "
            f"own overhead {overhead * 1000:.0f} ms/run"
        )
        print(f"  recommendation: {name or 'none'} ({doc['reason']})")
        if gain:
            print(
                f"  its gain (tune's own runs): {goal} x{gain['ratio']:.3f} "
                f"[{gain['low']:.3f}, {gain['high']:.3f}] {gain['verdict']}"
            )
        if gap is not None:
            print(
                f"  gap to the grid's best ({best}), in the grid's runs: {gap:+.3f} "
                f"({goal} ratio {grid[name][goal].ratio:.3f} vs {grid[best][goal].ratio:.3f})"
            )
    names = {a["name"] for a in answers}
    if len(names) == 1:
        print(f"seeds agree: {names.pop()}")
    else:
        ups = [a["runner_up"] for a in answers if a["runner_up"]]
        noise = [u for u in ups if u.get("verdict") != "significant"]
        print(
            f"seeds differ: {sorted(map(str, names))}; runner-up within noise of the "
            f"winner in {len(noise)} of {len(answers)} tunes: {[u['variant'] for u in noise]}"
        )
    print(f"results in {out}")
    if not args.out:
        print("(temporary: pass --out to keep them)")


if __name__ == "__main__":
    main()
