"""``compare``/``bench`` on the user's own program: ``-- CMD`` or ``--serve 'CMD {port}'``.

Not a subcommand of its own: compare and bench hand over here when given a command or
``--serve``. Everything is checked before the first run (bad input: exit 3); results are
written as they come.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from allocscope import exitcodes
from allocscope.bench import target, target_options, target_session
from allocscope.bench.options import PlanError, _positive, _whole, chosen_variants
from allocscope.bench.results import Run
from allocscope.bench.runner import Interrupted, stop_on_signals
from allocscope.bench.variants import Variant, VariantError

COMMAND_TIMEOUT = 3600.0  # a user's job may well take minutes; --timeout for more
# Without --repeats: enough runs for a verdict (stats.MIN_RUNS), interleaved. All of them
# when every run so far took under LONG_RUN seconds; past that, as many rounds as the
# --budget allows (never fewer than one), and the footer says so.
DEFAULT_REPEATS = 5
LONG_RUN = 60.0
AS_DEPLOYED = ("ALLOCSCOPE_AS_DEPLOYED", "1")
TREE_INTERVAL = 0.1  # at least: smaps_rollup of every process costs a page walk


def _fail(command: str, message: str, code: int) -> int:
    print(f"allocscope {command}: {message}", file=sys.stderr)
    return code


def run(command: str, args: argparse.Namespace, *, single: bool) -> int:
    if args.command and args.serve is not None:
        return _fail(command, "give either -- CMD or --serve, not both", exitcodes.USAGE)
    if args.workload:
        return _fail(
            command,
            "-w chooses a built-in workload; with -- CMD or --serve, leave it out",
            exitcodes.USAGE,
        )
    try:
        if single and not (args.variant or args.variants_file):
            args.variant = ["glibc"]
        variants = chosen_variants(args)
        if args.as_deployed:  # the hook reads it in each forked worker
            variants = [replace(v, env=(*v.env, AS_DEPLOYED)) for v in variants]
        if args.repeats == "auto":
            raise PlanError("--repeats auto is for the built-in workloads; give a number")
        chosen = args.repeats is None
        repeats = DEFAULT_REPEATS if chosen else _whole("repeats", args.repeats)
        _positive("budget", args.budget)
        warmup = 0 if args.warmup is None else args.warmup
        _positive("warmup", warmup, integer=True, zero=True)
        args.timeout = COMMAND_TIMEOUT if args.timeout is None else args.timeout
        _positive("timeout", args.timeout)
        _positive("interval", args.interval)
        serve = target_options.serve_options(args) if args.serve is not None else None
        argv = target.check_command(args.command) if serve is None else ()
        if serve is not None:
            from allocscope.bench import serve_target

            serve_target.check(serve)
    except (VariantError, PlanError, target.TargetError) as e:
        return _fail(command, str(e), exitcodes.BAD_INPUT)
    if single and len(variants) != 1:
        return _fail(
            command, "bench runs one variant; use allocscope compare for more", exitcodes.BAD_INPUT
        )
    for v in variants:
        if not v.available:
            print(f"allocscope {command}: skipping {v.name}: {v.unavailable}", file=sys.stderr)
    if not any(v.available for v in variants):
        return _fail(command, "no variant can run here (see above)", exitcodes.BAD_INPUT)
    out = args.out
    if out is None and not single:
        out = os.path.join("results", time.strftime("%Y%m%d-%H%M%S"))
    if out is not None:
        from allocscope.commands.compare import check_out  # compare imports this module

        code = check_out(command, out, force=args.force)
        if code != exitcodes.OK:
            return code
    interval = max(args.interval, TREE_INTERVAL)
    config = {
        "kind": "service" if serve else "command",
        "argv": list(argv),
        "serve": serve.config() if serve else None,
        "repeats": repeats,
        "repeats_default": {"runs": repeats, "long_run_s": LONG_RUN, "budget_s": args.budget}
        if chosen
        else None,
        "warmup": warmup,
        "interval_s": interval,
        "timeout_s": args.timeout,
    }
    path = os.path.join(out, "results.json") if out else None
    session = target_session.Session(variants, config, path)
    pairs = target_session.plan(variants, repeats, warmup)
    try:
        with stop_on_signals():
            _runs(pairs, serve, argv, args, interval, session, args.budget if chosen else None)
    except Interrupted as e:  # SIGINT, SIGTERM, SIGHUP: what was measured is kept
        assert session.results is not None
        session.results.session["interrupted"] = e.args[0]
        session.save()
        return _finish(command, session, out, args, stopped=(e.args[0], e.exit_code))
    except target.TargetError as e:  # found out only once running: a --ready that 404s
        return _fail(command, str(e), exitcodes.BAD_INPUT)
    return _finish(command, session, out, args)


def _runs(
    pairs: list[tuple[Variant, int]],
    serve: target_options.ServeOptions | None,
    argv: tuple[str, ...],
    args: argparse.Namespace,
    interval: float,
    session: target_session.Session,
    budget: float | None = None,
) -> None:
    """Run the pairs in order; with a ``budget`` (repeats left to us), stop before a
    measured round that would pass it once a run has taken LONG_RUN seconds or more."""
    started = time.monotonic()
    longest = 0.0
    for i, (variant, repeat) in enumerate(pairs, 1):
        first_of_round = repeat > 1 and pairs[i - 2][1] != repeat
        if budget is not None and first_of_round and longest >= LONG_RUN:
            spent = time.monotonic() - started
            if spent + spent / (repeat - 1) > budget:  # rounds so far (warm-ups included)
                assert session.results is not None
                session.results.session["repeats_stopped"] = (
                    f"{repeat - 1} run{'s' if repeat > 2 else ''} of each variant, not "
                    f"{DEFAULT_REPEATS}: a run took {longest:.0f} s and another round would "
                    f"pass the {budget:g} s budget (--budget S, or --repeats N)"
                )
                session.save()
                return
        began = time.monotonic()
        if serve is not None:
            from allocscope.bench import serve_target

            run_ = serve_target.run_service(
                serve, variant, repeat, interval=interval, session=session, quiet=args.quiet
            )
        else:
            spec = target.CommandSpec(
                argv, variant, repeat, args.timeout, interval, variant.trim_every
            )
            run_ = target.run_command(spec)
        longest = max(longest, time.monotonic() - began)
        session.add(run_)
        if not args.quiet:
            _say(i, len(pairs), variant, run_)


def _say(i: int, n: int, variant: Variant, run_: Run) -> None:
    from allocscope.report.progress import describe

    print(f"[{i}/{n}] {variant.name}: {describe(run_)}", file=sys.stderr, flush=True)


def _finish(
    command: str,
    session: target_session.Session,
    out: str | None,
    args: argparse.Namespace,
    stopped: tuple[str, int] | None = None,
) -> int:
    from allocscope.commands.compare import write_bundle
    from allocscope.report import table

    results = session.results
    assert results is not None
    table.print_terminal(results)
    if out is not None:
        code = write_bundle(command, results, out, charts=args.chart)
        if code != exitcodes.OK:
            return code
    if stopped is not None:
        kept = "the runs done so far are written" if out else "the runs done so far are shown"
        return _fail(command, f"stopped by {stopped[0]}: {kept}", stopped[1])
    if not any(r.counts for r in results.runs):
        return _fail(command, "no run succeeded", exitcodes.RUN_FAILED)
    return exitcodes.OK
