"""allocscope tune: search allocator settings on a workload, command or service; recommend one.

Everything that can be wrong with the input (space, knobs, objective, bounds, budget,
target) is refused before the first measured run. Results are written after every batch;
``--resume DIR`` continues an interrupted tune with the runs it already has.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from typing import TYPE_CHECKING, Any

from allocscope import exitcodes
from allocscope.bench import workloads
from allocscope.commands import flags
from allocscope.errors import AllocscopeError

if TYPE_CHECKING:  # the search needs psutil ([bench]); the parser must not
    from allocscope.bench.variants import Variant
    from allocscope.tune.measure import Target
    from allocscope.tune.session import Plan

HELP = "search allocator settings on your workload or service and recommend one, with proof"
EPILOG = (
    "Exit codes: 0 done (a recommendation, or an honest none with its reason), 2 usage "
    "error, 3 invalid input (an unknown or unread knob, a value of the wrong type, an empty "
    "space, an objective or bound the target has no figure for, a bound the baseline itself "
    "fails, a budget too small for the smallest search, an --out that holds results), "
    "4 the baseline never ran successfully, 128+N stopped by signal N after writing what was "
    "measured (continue with --resume DIR)."
)
DEFAULT_BUDGET = "20m"
PARAMS = ("threads", "iters", "size", "keep", "rounds")
TREE_INTERVAL = 0.1  # at least, sampling a process tree (as compare does)
# Arguments a resumed tune takes from the first one (the target and the search).
_KEPT = (
    "workload",
    "scale",
    "threads",
    "iters",
    "size",
    "keep",
    "rounds",
    "command",
    "serve",
    "ready",
    "ready_timeout",
    "load",
    "duration",
    "concurrency",
    "load_procs",
    "url",
    "requests",
    "load_cmd",
    "warm",
    "idle",
    "grace",
    "progress_every",
    "space",
    "objective",
    "bound",
    "baseline",
    "budget",
    "max_runs",
    "seed",
    "settle",
    "interval",
    "timeout",
)


class TuneError(AllocscopeError, ValueError):
    exit_code = exitcodes.BAD_INPUT


def configure(parser: argparse.ArgumentParser) -> None:
    flags.add_target_arguments(parser)
    w = parser.add_argument_group("built-in workload")
    w.add_argument("--workload", "-w", metavar="NAME", help=", ".join(workloads.NAMES))
    w.add_argument("--scale", type=float, default=1.0, help="multiply the workload's iterations")
    for name in PARAMS:
        w.add_argument(f"--{name}", type=int, help=f"override the workload's {name}")
    s = parser.add_argument_group("search")
    s.add_argument(
        "--space",
        metavar="TOML",
        help="the knobs and values to search (default: "
        "every allocator's main knobs that the installed version reads)",
    )
    s.add_argument(
        "--objective",
        choices=("peak", "retained", "idle", "p99", "throughput"),
        help="what to minimise (throughput: maximise); default retained (RSS at the last "
        "--settle point; idle is its older name for a service)",
    )
    s.add_argument(
        "--bound",
        metavar="F>=R,...",
        help="ratios to the baseline that must hold "
        "(default 'throughput>=0.95,p99<=1.10', where the target has them)",
    )
    s.add_argument(
        "--baseline",
        default="glibc",
        metavar="VARIANT",
        help="a built-in variant or -V spec to beat (default glibc)",
    )
    s.add_argument(
        "--budget",
        default=DEFAULT_BUDGET,
        metavar="D",
        help=f"time to spend: 90s, 10m, 1h (default {DEFAULT_BUDGET})",
    )
    s.add_argument("--max-runs", type=int, metavar="N", help="runs to spend at most")
    s.add_argument("--seed", type=int, help="seed of the candidates, the order and the bootstrap")
    s.add_argument("--resume", metavar="DIR", help="continue the tune whose results are in DIR")
    m = parser.add_argument_group("measurement")
    m.add_argument(
        "--settle",
        metavar="S,S",
        help="RSS reads this many seconds after the work (a workload: default 0.5,2) or the "
        "load (a service: default 1,5)",
    )
    m.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval, s")
    m.add_argument("--timeout", type=float, help="seconds before a run is killed")
    o = parser.add_argument_group("output")
    o.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help="results.json, pareto.png/svg (default tune/<timestamp>/)",
    )
    o.add_argument("--force", action="store_true", help="overwrite an --out holding results")
    o.add_argument("--no-chart", dest="chart", action="store_false", help="skip the chart")
    o.add_argument("--json", action="store_true", help="print the decision as JSON on stdout")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.epilog = EPILOG


def _say(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr, flush=True)


def _target(args: argparse.Namespace, baseline: Variant) -> Target:
    """The engine's checked plan for the baseline alone: tune runs its candidates on it."""
    from allocscope.bench.plan import make
    from allocscope.tune.measure import Target

    if args.command and args.serve is not None:
        raise TuneError("give either -- CMD or --serve, not both", exitcodes.USAGE)
    wants = flags.wants_target(args)
    if wants and args.workload:
        raise TuneError(
            "-w chooses a built-in workload; with -- CMD or --serve, leave it out", exitcodes.USAGE
        )
    if not wants and not args.workload:
        raise TuneError(
            "give a target: -w WORKLOAD, -- CMD or --serve 'CMD {port}'", exitcodes.USAGE
        )
    common: dict[str, Any] = {"repeats": 1, "warmup": 0, "seed": 0, "timeout": args.timeout}
    if args.serve is not None:
        plan = make(
            [baseline],
            service=flags.service_from(args),
            settle=flags.settle_from(args),
            interval=max(args.interval, TREE_INTERVAL),
            **common,
        )
    elif wants:
        plan = make(
            [baseline], command=args.command, interval=max(args.interval, TREE_INTERVAL), **common
        )
    else:
        params = {k: getattr(args, k) for k in PARAMS if getattr(args, k) is not None}
        plan = make(
            [baseline],
            workloads=[args.workload],
            scale=args.scale,
            params=params,
            settle=flags.settle_from(args),
            interval=args.interval,
            purge=False,
            **common,
        )
    target = Target(plan)
    target.prepare()
    return target


def _resumed(args: argparse.Namespace) -> tuple[argparse.Namespace, list[Any], str]:
    """The first tune's arguments and runs; TuneError when DIR holds no tune."""
    from allocscope.bench.results import ResultsError
    from allocscope.tune import document

    try:
        old, search = document.load(args.resume)
    except ResultsError as e:
        raise TuneError(f"--resume {args.resume}: {e}") from None
    saved = search.args
    if saved.get("idle") is not None:  # an older tune of a service: --settle had a default
        saved = {**saved, "settle": None}
    merged = vars(args) | {k: v for k, v in saved.items() if k in _KEPT}
    return argparse.Namespace(**merged), list(old.runs), old.created


def _plan(args: argparse.Namespace) -> Plan:
    """Every check that needs no run, in the order a user would fix them."""
    from allocscope.bench import variants
    from allocscope.bench.plan import PlanError, parse_duration
    from allocscope.tune import objective, search, session, setting, space

    known: tuple[Any, ...] = ()
    created = None
    if args.resume:
        args, runs, created = _resumed(args)
        known = tuple(runs)
    try:
        baseline = variants.parse_spec(args.baseline)
    except variants.VariantError as e:
        raise TuneError(f"--baseline: {e}") from None
    if not baseline.available:
        raise TuneError(f"--baseline {baseline.name}: {baseline.unavailable}")
    target = _target(args, baseline)
    kind = target.kind
    goal = objective.figure(kind, args.objective or objective.default_objective(kind))
    bounds = objective.parse_bounds(
        args.bound or objective.DEFAULT_BOUNDS, kind, given=args.bound is not None
    )
    try:
        budget = parse_duration(args.budget, "--budget")
    except PlanError as e:
        raise TuneError(str(e)) from None
    smallest = search.Schedule(1).runs()
    if args.max_runs is not None and args.max_runs < smallest:
        raise TuneError(
            f"--max-runs {args.max_runs} is too small for one search: the smallest "
            f"(1 candidate raced to {search.FINAL_RUNS} runs against the baseline) "
            f"takes {smallest} runs"
        )
    chosen = space.load(args.space) if args.space else space.default_space(trim=kind != "workload")
    proof = space.prove(chosen, explicit=bool(args.space))
    for knob, why in proof.refused.items():
        _say(args, f"allocscope tune: left out {knob}: {why}")
    for allocator, why in proof.missing.items():
        _say(args, f"allocscope tune: left out [{allocator}]: {why}")
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    args.seed = seed
    skip = [setting.Setting(baseline.allocator, ())] if not baseline.env else []
    settings = setting.sample(proof.space, search.FIRST_MAX, random.Random(seed), skip=skip)
    if not settings:
        raise TuneError("the space holds no setting besides the baseline: nothing to search")
    return session.Plan(
        target=target,
        objective=goal,
        bounds=bounds,
        baseline=baseline,
        settings=tuple(settings),
        proof=proof,
        seed=seed,
        budget_s=budget,
        budget_text=args.budget,
        max_runs=args.max_runs,
        out=args.resume or args.out or os.path.join("tune", time.strftime("%Y%m%d-%H%M%S")),
        record={k: v for k, v in vars(args).items() if k in _KEPT},
        known=known,
        created=created,
    )


def run(args: argparse.Namespace) -> int:
    from allocscope.report.bundle import check_out
    from allocscope.tune import recommend, render, session

    plan = _plan(args)
    if not args.resume:
        check_out(plan.out, force=args.force)
    outcome = session.execute(plan, lambda line: _say(args, line))
    race, decision = outcome.race, outcome.decision
    written = [os.path.join(plan.out, "results.json")]
    rec = decision.recommendation
    if args.chart and race.finalists():
        from allocscope.tune import pareto

        try:
            stem = os.path.join(plan.out, "pareto")
            written += pareto.write(race, rec.setting.name if rec else None, stem)
        except ModuleNotFoundError:
            _say(args, "allocscope tune: no chart: matplotlib is not installed ([report] extra)")
    render.print_table(race, decision)
    if rec is not None:
        print()
        print(recommend.snippets(rec, kind=plan.target.kind))
    print(f"\nwrote {', '.join(written)}")
    if args.json:
        print(json.dumps(decision.record().to_dict(), indent=2))
    if outcome.interrupted is not None:
        name, code = outcome.interrupted
        _say(
            args,
            f"allocscope tune: stopped by {name}: what was measured is in {plan.out}; "
            f"continue with --resume {plan.out}",
        )
        return code
    if not any(r.counts for r in race.base_runs):
        raise TuneError(
            f"the baseline {plan.baseline.name} never ran successfully", exitcodes.RUN_FAILED
        )
    return exitcodes.OK
