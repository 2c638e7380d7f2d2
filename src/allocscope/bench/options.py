"""Command-line options shared by ``allocscope bench`` and ``allocscope compare``.

Flags become one :class:`Plan` (uvicorn's idiom: flags, then one config object, then the
run); invalid values become :class:`PlanError` with a message that says what to change.
"""

from __future__ import annotations

import argparse
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from allocscope.bench import workloads
from allocscope.bench.variants import BUILTINS, Variant, VariantError, parse_lib_overrides, select

PARAM_FLAGS = ("threads", "iters", "size", "keep", "rounds")
AUTO_FIRST = 5  # --repeats auto: repeats before the first look (stats.MIN_RUNS)
AUTO_TARGET = 0.05  # +-5 % of the median
AUTO_BUDGET = 600.0
AUTO_MAX = 20


class PlanError(ValueError):
    """Invalid input on the command line (exit 3)."""


@dataclass(frozen=True)
class Plan:
    variants: list[Variant]  # unavailable ones included: they are reported
    workloads: list[tuple[str, workloads.Params]]
    repeats: int  # measured runs; with auto, the first batch (then more, one at a time)
    warmup: int
    settle: tuple[float, ...]
    interval: float
    timeout: float
    serial: bool
    purge: bool
    seed: int  # shuffles the order of each repeat and seeds the bootstrap
    auto: bool = False  # --repeats auto: repeat until the intervals are narrow enough
    target: float = AUTO_TARGET  # half-width of the interval, relative to the median
    budget: float = AUTO_BUDGET  # seconds --repeats auto may spend in all
    max_repeats: int = AUTO_MAX

    @property
    def available(self) -> list[Variant]:
        return [v for v in self.variants if v.available]

    def config(self) -> dict[str, Any]:
        """What the results file records about how it was made."""
        return {
            "workloads": {name: params.to_dict() for name, params in self.workloads},
            "repeats": self.repeats,
            "warmup": self.warmup,
            "settle_s": list(self.settle),
            "interval_s": self.interval,
            "timeout_s": self.timeout,
            "serial": self.serial,
            "purge": self.purge,
            "seed": self.seed,
            "repeats_auto": {
                "target": self.target,
                "budget_s": self.budget,
                "max": self.max_repeats,
            }
            if self.auto
            else None,
        }


def _repeatable(group: Any, *flags: str, metavar: str, help: str) -> None:
    group.add_argument(*flags, action="append", default=[], metavar=metavar, help=help)


def add_arguments(parser: argparse.ArgumentParser, *, default_workloads: Sequence[str]) -> None:
    v = parser.add_argument_group("variants")
    _repeatable(
        v,
        "--variant",
        "-V",
        metavar="SPEC",
        help=f"a built-in variant ({', '.join(BUILTINS)}) or "
        "name=N,lib=jemalloc|PATH[,allocator=A][,env=K=V...]; repeatable",
    )
    _repeatable(
        v,
        "--variants-file",
        metavar="TOML",
        help="variants from a TOML file of [[variant]] tables (name, lib, allocator, env)",
    )
    _repeatable(
        v,
        "--lib",
        metavar="NAME=PATH",
        help="use this library for an allocator instead of the discovered one",
    )
    _repeatable(
        v,
        "--lib-dir",
        metavar="DIR",
        help="look for allocator libraries only here (default: Debian's multiarch dir, "
        "/usr/lib, /usr/local/lib, ...); repeatable",
    )
    v.add_argument(
        "--pythonmalloc",
        action="store_true",
        help="also run every variant with PYTHONMALLOC=malloc (no pymalloc in front)",
    )
    w = parser.add_argument_group("workloads")
    _repeatable(
        w,
        "--workload",
        "-w",
        metavar="NAME",
        help=f"{', '.join(workloads.NAMES)} (default: {', '.join(default_workloads)}); repeatable",
    )
    w.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply each workload's iterations (default 1: a few seconds per run)",
    )
    for name in PARAM_FLAGS:
        w.add_argument(f"--{name}", type=int, help=f"override the workloads' {name}")
    m = parser.add_argument_group("measurement")
    m.add_argument(
        "--repeats",
        "-r",
        metavar="N|auto",
        help="measured runs of each variant (default 5: fewer get no verdict; for a command "
        "or service, 5 interleaved unless a run takes a minute or more, then as many as "
        "--budget allows); auto (built-in workloads): repeat "
        "until the 99%% interval "
        "of retained RSS, peak RSS and CPU time is within --target of each median, or "
        "--budget is spent",
    )
    m.add_argument(
        "--target",
        type=float,
        default=AUTO_TARGET * 100,
        metavar="PCT",
        help="--repeats auto: half-width of the intervals, %% of the median "
        f"(default {AUTO_TARGET * 100:g})",
    )
    m.add_argument(
        "--budget",
        type=float,
        default=AUTO_BUDGET,
        metavar="S",
        help=f"--repeats auto: seconds to spend at most, shared by the workloads "
        f"(default {AUTO_BUDGET:g}; at most {AUTO_MAX} repeats); a command or service "
        "without --repeats: seconds its long runs may take in all",
    )
    m.add_argument(
        "--seed",
        type=int,
        help="seed of the shuffled run order and the bootstrap (default: random, recorded)",
    )
    m.add_argument(
        "--warmup", type=int, help="warm-up runs, not counted (default 1; 0 for a command/service)"
    )
    m.add_argument(
        "--settle",
        default="0.5,2",
        metavar="S,S,...",
        help="read RSS this many seconds after freeing (default 0.5,2; the last is 'retained')",
    )
    m.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval, s")
    m.add_argument(
        "--timeout",
        type=float,
        help="seconds before a child (or a command's process group) is killed "
        "(default 120; 3600 for a command)",
    )
    m.add_argument(
        "--serial",
        action="store_true",
        help="one child at a time (by default a child settles while the next one works)",
    )
    m.add_argument(
        "--no-purge",
        dest="purge",
        action="store_false",
        help="skip the final 'purged' reading (allocator asked to return free memory)",
    )


def _positive(name: str, value: float, *, integer: bool = False, zero: bool = False) -> None:
    low_ok = value >= 0 if zero else value > 0
    if not (low_ok and math.isfinite(value)) or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        bound = "0 or more" if zero else "greater than 0"
        raise PlanError(f"--{name} must be {kind} {bound}, not {value:g}")


def _whole(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PlanError(
            f"--{name} must be a whole number greater than 0 or auto, not {text!r}"
        ) from None
    _positive(name, value, integer=True)
    return value


def parse_settle(text: str) -> tuple[float, ...]:
    if not text.strip():
        return ()
    try:
        values = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise PlanError(f"--settle {text!r}: expected seconds like 0.5,2") from None
    for value in values:
        _positive("settle", value, zero=True)
    return tuple(sorted(values))


def chosen_variants(args: argparse.Namespace) -> list[Variant]:
    """The variants the flags name (-V, --variants-file, --pythonmalloc, --lib, --lib-dir);
    VariantError for an unknown or malformed one."""
    return select(
        args.variant,
        args.variants_file,
        pythonmalloc=args.pythonmalloc,
        libs=parse_lib_overrides(args.lib),
        lib_dirs=args.lib_dir,
    )


def build(args: argparse.Namespace, *, default_workloads: Sequence[str]) -> Plan:
    """The plan from parsed flags; PlanError for anything invalid."""
    args.repeats = "5" if args.repeats is None else args.repeats
    args.warmup = 1 if args.warmup is None else args.warmup
    _positive("scale", args.scale)
    auto = args.repeats == "auto"
    repeats = AUTO_FIRST if auto else _whole("repeats", args.repeats)
    _positive("target", args.target)
    _positive("budget", args.budget)
    _positive("warmup", args.warmup, integer=True, zero=True)
    _positive("interval", args.interval)
    args.timeout = 120.0 if args.timeout is None else args.timeout
    _positive("timeout", args.timeout)
    try:
        variants = chosen_variants(args)
        overrides = {k: getattr(args, k) for k in PARAM_FLAGS if getattr(args, k) is not None}
        chosen = []
        for name in args.workload or default_workloads:
            params = workloads.defaults(name).scaled(args.scale).replace(**overrides)
            chosen.append((name, params))
    except (VariantError, workloads.WorkloadError) as e:
        raise PlanError(str(e)) from None
    if len({n for n, _ in chosen}) != len(chosen):
        raise PlanError("a workload is given twice")
    return Plan(
        variants=variants,
        workloads=chosen,
        repeats=repeats,
        warmup=args.warmup,
        settle=parse_settle(args.settle),
        interval=args.interval,
        timeout=args.timeout,
        serial=args.serial,
        purge=args.purge,
        seed=args.seed if args.seed is not None else secrets.randbits(32),
        auto=auto,
        target=args.target / 100,
        budget=args.budget,
    )
