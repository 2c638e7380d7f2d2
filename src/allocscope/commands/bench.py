"""allocscope bench: one variant on one workload, measured and proved."""

from __future__ import annotations

import argparse

from allocscope.bench import options, target_options
from allocscope.bench.options import PlanError
from allocscope.commands import output
from allocscope.commands.compare import measure_and_write, prepare

HELP = "benchmark one allocator variant on one workload (warm-up, repeats, proof, RSS)"
DEFAULT_WORKLOAD = ("fragment",)


def configure(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser, default_workloads=DEFAULT_WORKLOAD)
    target_options.add_arguments(parser)
    output.add_arguments(parser, default_out="none: print the table only")
    parser.epilog = (
        "Without --variant, runs glibc. Exit codes: 0 done, 2 usage error, "
        "3 invalid input, 4 no run proved its allocator."
    )


def run(args: argparse.Namespace) -> int:
    if target_options.wants_target(args):
        # Imported here: it needs psutil ([bench]); the parser must not (a core-only install).
        from allocscope.commands import targets

        return targets.run("bench", args, single=True)
    if len(args.variant) + len(args.variants_file) == 0:
        args.variant = ["glibc"]
    plan = prepare("bench", args, DEFAULT_WORKLOAD)
    if len(plan.variants) != 1 or len(plan.workloads) != 1:
        raise PlanError("bench runs one variant on one workload; use allocscope compare for more")
    return measure_and_write("bench", plan, args, args.out)
