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

from allocscope.bench import target, target_options, target_session
from allocscope.bench.options import PlanError, _positive, _whole, chosen_variants
from allocscope.bench.results import Run
from allocscope.bench.runner import Interrupted, stop_on_signals
from allocscope.bench.variants import Variant
from allocscope.commands import output
from allocscope.commands.compare import finish
from allocscope.errors import UsageError

COMMAND_TIMEOUT = 3600.0  # a user's job may well take minutes; --timeout for more
TREE_INTERVAL = 0.1  # at least: smaps_rollup of every process costs a page walk


def run(command: str, args: argparse.Namespace, *, single: bool) -> int:
    if args.command and args.serve is not None:
        raise UsageError("give either -- CMD or --serve, not both")
    if args.workload:
        raise UsageError("-w chooses a built-in workload; with -- CMD or --serve, leave it out")
    if single and not (args.variant or args.variants_file):
        args.variant = ["glibc"]
    variants = chosen_variants(args)
    if args.repeats == "auto":
        raise PlanError("--repeats auto is for the built-in workloads; give a number")
    repeats = 1 if args.repeats is None else _whole("repeats", args.repeats)
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
    if single and len(variants) != 1:
        raise PlanError("bench runs one variant; use allocscope compare for more")
    for v in variants:
        if not v.available:
            output.warn(command, f"skipping {v.name}: {v.unavailable}")
    if not any(v.available for v in variants):
        raise PlanError("no variant can run here (see above)")
    out = args.out
    if out is None and not single:
        out = os.path.join("results", time.strftime("%Y%m%d-%H%M%S"))
    if out is not None:
        output.check_out(out, force=args.force)
    interval = max(args.interval, TREE_INTERVAL)
    config = {
        "kind": "service" if serve else "command",
        "argv": list(argv),
        "serve": serve.config() if serve else None,
        "repeats": repeats,
        "warmup": warmup,
        "interval_s": interval,
        "timeout_s": args.timeout,
    }
    path = os.path.join(out, "results.json") if out else None
    session = target_session.Session(variants, config, path)
    pairs = target_session.plan(variants, repeats, warmup)
    try:
        with stop_on_signals():
            _runs(pairs, serve, argv, args, interval, session)
    except Interrupted as e:  # SIGINT, SIGTERM, SIGHUP: what was measured is kept
        assert session.results is not None
        session.results.session["interrupted"] = e.args[0]
        session.save()
    assert session.results is not None
    return finish(command, session.results, out, charts=args.chart)


def _runs(
    pairs: list[tuple[Variant, int]],
    serve: target_options.ServeOptions | None,
    argv: tuple[str, ...],
    args: argparse.Namespace,
    interval: float,
    session: target_session.Session,
) -> None:
    for i, (variant, repeat) in enumerate(pairs, 1):
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
        session.add(run_)
        if not args.quiet:
            _say(i, len(pairs), variant, run_)


def _say(i: int, n: int, variant: Variant, run_: Run) -> None:
    from allocscope.report.progress import describe

    print(f"[{i}/{n}] {variant.name}: {describe(run_)}", file=sys.stderr, flush=True)
