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
from typing import Any

from allocscope import exitcodes
from allocscope.bench import workloads
from allocscope.commands import flags
from allocscope.errors import AllocscopeError

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
    for name in ("threads", "iters", "size", "keep", "rounds"):
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
        help="what to minimise (throughput: maximise); default retained (idle for a service)",
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
        "--settle", default="0.5,2", metavar="S,S", help="workload: RSS reads after freeing"
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


def _target(args: argparse.Namespace) -> Any:
    from allocscope.bench.plan import SERVICE_SETTLE, PlanError, parse_settle
    from allocscope.tune import measure

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
    if not (args.interval > 0):
        raise TuneError(f"--interval must be greater than 0, not {args.interval}")
    if args.timeout is not None and not args.timeout > 0:
        raise TuneError(f"--timeout must be greater than 0, not {args.timeout}")
    try:
        if args.serve is not None:
            from allocscope.bench import serve_target

            opts = flags.service_from(args)
            serve_target.check(opts)
            idle = parse_settle(args.idle, "--idle") if args.idle else SERVICE_SETTLE
            return measure.Service(opts=opts, interval=max(args.interval, 0.1), settle=idle)
        if wants:
            from allocscope.bench import target

            argv = target.check_command(args.command)
            return measure.Command(
                argv=argv, timeout=args.timeout or 3600.0, interval=max(args.interval, 0.1)
            )
        overrides = {
            k: getattr(args, k)
            for k in ("threads", "iters", "size", "keep", "rounds")
            if getattr(args, k) is not None
        }
        params = workloads.defaults(args.workload).scaled(args.scale).replace(**overrides)
        settle = parse_settle(args.settle)
        return measure.Workload(
            args.workload,
            params,
            settle=settle or (0.5, 2.0),
            timeout=args.timeout or 120.0,
            interval=args.interval,
        )
    except (PlanError, workloads.WorkloadError) as e:
        raise TuneError(str(e)) from None


def _resumed(args: argparse.Namespace) -> tuple[argparse.Namespace, list[Any], str]:
    """The first tune's arguments and runs; TuneError when DIR holds no tune."""
    from allocscope.bench.results import ResultsError
    from allocscope.tune import document

    try:
        old = document.load(args.resume)
    except ResultsError as e:
        raise TuneError(f"--resume {args.resume}: {e}") from None
    saved = old.session["tune"].get("args") or {}
    merged = vars(args) | {k: v for k, v in saved.items() if k in _KEPT}
    return argparse.Namespace(**merged), list(old.runs), old.created


def run(args: argparse.Namespace) -> int:
    from allocscope.bench import variants
    from allocscope.bench.plan import PlanError, parse_duration
    from allocscope.bench.runner import Interrupted, stop_on_signals
    from allocscope.report.bundle import check_out
    from allocscope.tune import document, objective, recommend, search, setting, space

    known: list[Any] = []
    created = None
    if args.resume:
        args, known, created = _resumed(args)
        args.out = args.resume
    target = _target(args)
    kind = target.kind
    # ---- everything checked before the first run ----
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
    try:
        baseline = variants.parse_spec(args.baseline)
    except variants.VariantError as e:
        raise TuneError(f"--baseline: {e}") from None
    if not baseline.available:
        raise TuneError(f"--baseline {baseline.name}: {baseline.unavailable}")
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    args.seed = seed
    base_setting = setting.Setting(baseline.allocator, ())
    found = variants.Libraries()
    settings = setting.sample(
        proof.space,
        search.FIRST_MAX,
        random.Random(seed),
        skip=[base_setting] if not baseline.env else [],
    )
    if not settings:
        raise TuneError("the space holds no setting besides the baseline: nothing to search")
    by_name = {s.name: s for s in settings}
    cands = [search.Candidate(s.variant(found)) for s in settings]
    cands = [c for c in cands if c.variant.available]
    out = args.out or os.path.join("tune", time.strftime("%Y%m%d-%H%M%S"))
    if not args.resume:
        check_out(out, force=args.force)
    race = search.Race(baseline, cands, goal, bounds, seed, target.workload)
    tune_info: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k in _KEPT},
        "space": proof.space.to_dict(),
        "refused": proof.refused,
        "missing": proof.missing,
        "budget_s": budget,
        "max_runs": args.max_runs,
        "specs": {s.name: s.spec() for s in settings},
    }
    config = {**target.config(), "tune": {"objective": goal.name, "budget_s": budget}}
    runs: list[Any] = []
    started = time.monotonic()

    def heard(run_: Any) -> None:
        runs.append(run_)
        if not args.quiet:
            from allocscope.report.progress import describe

            left = max(0.0, budget - (time.monotonic() - started))
            _say(args, f"  [{len(runs)}] {run_.variant}: {describe(run_)} ({left:.0f} s left)")

    def measure(batch: list[Any]) -> list[Any]:
        return list(target.run(batch, heard))

    def saved() -> None:
        document.save(
            document.build(race, [*known, *runs], config=config, tune=tune_info, created=created),
            out,
        )

    # The budget in runs comes from one warm-up of the baseline (a few seconds).
    warm = [r for r in known if r.variant == baseline.name and r.repeat == 0]
    interrupted = None
    try:
        with stop_on_signals():
            if not warm:
                began = time.monotonic()
                _say(
                    args, f"warm-up: {baseline.name} (to size the search to --budget {args.budget})"
                )
                warm = measure([(baseline, 0)])
                race.measuring_s += time.monotonic() - began
            per_run = max(0.5, max(r.duration_s for r in warm))
            affordable = int(budget / per_run)
            if args.max_runs is not None:
                affordable = min(affordable, args.max_runs)
            schedule = search.fit(affordable, len(cands))
            if schedule is None:
                raise TuneError(
                    f"--budget {args.budget} is too small for one search: a run takes "
                    f"~{per_run:.1f} s and the smallest search takes {smallest} runs "
                    f"(~{smallest * per_run:.0f} s)"
                )
            race.candidates = cands[: schedule.first]
            tune_info["schedule"] = {
                "first": schedule.first,
                "sizes": schedule.sizes(),
                "runs": schedule.runs(),
                "per_run_s": round(per_run, 2),
            }
            _say(
                args,
                f"searching {schedule.first} of {proof.space.size()} settings "
                f"(rounds of {schedule.sizes()} candidates, ~{schedule.runs()} runs, seed {seed})",
            )
            search.run(
                race,
                schedule,
                measure,
                known=[*known, *warm],
                deadline=started + budget,
                max_runs=args.max_runs,
                say=lambda line: _say(args, line),
                saved=saved,
            )
    except Interrupted as e:
        interrupted = (e.args[0], e.exit_code)
    decision = recommend.decide(race, by_name)
    tune_info["duration_s"] = round(time.monotonic() - started, 1)
    tune_info["runs_measured"] = len(runs)
    tune_info["measuring_s"] = round(race.measuring_s, 1)  # the rest is the search's own
    results = document.build(
        race, [*known, *runs], config=config, tune=tune_info, created=created, decision=decision
    )
    document.save(results, out)
    written = [os.path.join(out, document.FILE)]
    rec = decision.recommendation
    if args.chart and race.finalists():
        from allocscope.tune import pareto

        try:
            written += pareto.write(
                race, rec.setting.name if rec else None, os.path.join(out, "pareto")
            )
        except ModuleNotFoundError:
            _say(args, "allocscope tune: no chart: matplotlib is not installed ([report] extra)")
    _print_table(race, decision)
    if rec is not None:
        print()
        print(recommend.snippets(rec, kind=kind))
    print(f"\nwrote {', '.join(written)}")
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    if interrupted is not None:
        _say(
            args,
            f"allocscope tune: stopped by {interrupted[0]}: what was measured is in {out}; "
            f"continue with --resume {out}",
        )
        return interrupted[1]
    if not any(r.counts for r in race.base_runs):
        print(
            f"allocscope tune: the baseline {baseline.name} never ran successfully", file=sys.stderr
        )
        return exitcodes.RUN_FAILED
    return exitcodes.OK


def _print_table(race: Any, decision: Any) -> None:
    figures = [race.objective.name, *(b.figure.name for b in race.bounds)]
    figures = list(dict.fromkeys([*figures, "throughput"]))
    rec = decision.recommendation.setting.name if decision.recommendation else None
    ranked = race.finalists() + sorted(
        (c for c in race.candidates if c not in race.finalists() and c.ratios),
        key=lambda c: (-(c.round_left or 0), race.score(c)),
    )
    print(
        f"\nallocscope tune: {race.workload}, baseline {race.baseline.name}, "
        f"{len(race.base_runs)} baseline runs, seed {race.seed}"
    )
    head = f"{'candidate':<58} {'runs':>4}  " + "  ".join(f"{f:<30}" for f in figures)
    print(head)
    for c in ranked[:25]:
        cells = []
        for f in figures:
            r = c.ratios.get(f)
            cells.append(
                f"{'-':<30}"
                if r is None
                else f"{f'x{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}] {r.verdict}':<30}"
            )
        mark = (
            "  <- recommended"
            if c.name == rec
            else (f"  (dropped: {c.dropped})" if c.dropped else "")
        )
        print(f"{c.name[:58]:<58} {len(c.counted()):>4}  " + "  ".join(cells) + mark)
    failed = [c for c in race.candidates if c.dropped and c.dropped.startswith("every run failed")]
    for c in failed:
        print(f"failed: {c.name}: {c.dropped}")
    print(f"\n{decision.reason}")
