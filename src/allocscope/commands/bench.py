"""allocscope bench: one variant on one workload (or command, or service), measured and
proved."""

from __future__ import annotations

import argparse

from allocscope.commands import flags, output
from allocscope.commands.compare import measure

HELP = "benchmark one allocator variant on one workload (warm-up, repeats, proof, RSS)"
DEFAULT_WORKLOAD = ("fragment",)


def configure(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, default_workloads=DEFAULT_WORKLOAD)
    output.add_arguments(parser, default_out="none: print the table only")
    parser.epilog = (
        "Without --variant, runs glibc. Exit codes: 0 done, 2 usage error, "
        "3 invalid input, 4 no run proved its allocator."
    )


def run(args: argparse.Namespace) -> int:
    plan = flags.plan_from(args, default_workloads=DEFAULT_WORKLOAD, single=True)
    return measure("bench", plan, args, args.out)
