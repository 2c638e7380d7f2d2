"""The flags of ``bench`` and ``compare``, and the one place they become a Plan.

argparse stops here: :func:`plan_from` reads the Namespace (never changes it) and calls
:func:`allocscope.bench.plan.make`, the same function ``allocscope.compare`` calls.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from allocscope.bench import workloads
from allocscope.bench.plan import (
    AUTO_BUDGET,
    AUTO_MAX,
    AUTO_TARGET,
    PARAM_FLAGS,
    Plan,
    PlanError,
    Service,
    make,
    parse_duration,
    parse_repeats,
    parse_settle,
)
from allocscope.bench.variants import BUILTINS, Variant, parse_lib_overrides, select
from allocscope.errors import UsageError

T = TypeVar("T")


def _typed(flag: str, convert: Callable[[str], T], kind: str) -> Callable[[str], T]:
    """An argparse type whose refusal is a PlanError (exit 3, like every value we check)."""

    def parse(text: str) -> T:
        try:
            return convert(text)
        except ValueError:
            raise PlanError(f"--{flag} must be {kind}, not {text!r}") from None

    return parse


def whole(flag: str) -> Callable[[str], int]:
    return _typed(flag, int, "a whole number")


def number(flag: str) -> Callable[[str], float]:
    """A number; its range is checked with the plan."""
    return _typed(flag, float, "a number")


def _repeatable(group: Any, *flags: str, metavar: str, help: str) -> None:
    group.add_argument(*flags, action="append", default=[], metavar=metavar, help=help)


def add_arguments(parser: argparse.ArgumentParser, *, default_workloads: Sequence[str]) -> None:
    _variant_arguments(parser)
    w = parser.add_argument_group("workloads")
    _repeatable(
        w,
        "--workload",
        "-w",
        metavar="NAME",
        help=f"{', '.join(workloads.NAMES)} or module:function "
        f"(default: {', '.join(default_workloads)}); repeatable",
    )
    w.add_argument(
        "--scale",
        type=number("scale"),
        default=1.0,
        help="multiply each workload's iterations (default 1: a few seconds per run)",
    )
    for name in PARAM_FLAGS:
        w.add_argument(f"--{name}", type=whole(name), help=f"override the workloads' {name}")
    _measurement_arguments(parser)
    add_target_arguments(parser)


def _variant_arguments(parser: argparse.ArgumentParser) -> None:
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


def _measurement_arguments(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("measurement (every kind: workloads, -- CMD, --serve)")
    m.add_argument(
        "--repeats",
        "-r",
        metavar="N|auto",
        help="measured runs of each variant (default 5: fewer get no verdict; for a command "
        "or service, 5 interleaved unless a run takes a minute or more, then as many as "
        "--budget allows); auto (every kind): repeat until the 99%% interval of retained "
        "RSS (where there is one), peak RSS and CPU time is within --target of each "
        "median, or --budget is spent",
    )
    m.add_argument(
        "--target",
        type=number("target"),
        default=AUTO_TARGET * 100,
        metavar="PCT",
        help="--repeats auto: half-width of the intervals, %% of the median "
        f"(default {AUTO_TARGET * 100:g})",
    )
    m.add_argument(
        "--budget",
        type=number("budget"),
        default=AUTO_BUDGET,
        metavar="S",
        help=f"--repeats auto: seconds to spend at most, shared by the workloads "
        f"(default {AUTO_BUDGET:g}; at most {AUTO_MAX} repeats); a command or service "
        "without --repeats: seconds its long runs may take in all",
    )
    m.add_argument(
        "--seed",
        type=whole("seed"),
        help="seed of the shuffled run order and the bootstrap (default: random, recorded)",
    )
    m.add_argument(
        "--warmup",
        type=whole("warmup"),
        help="warm-up runs, not counted (default 1; 0 for a command/service)",
    )
    m.add_argument(
        "--settle",
        metavar="S,S,...",
        help="read RSS this many seconds after the work, or a service's load (default 0.5,2; "
        "1,5 for a service; the last is 'retained'); not for a command, which ends by itself",
    )
    m.add_argument(
        "--interval",
        type=number("interval"),
        default=0.05,
        help="RSS sampling interval, s (at least 0.1 for a command or service)",
    )
    m.add_argument(
        "--timeout",
        type=number("timeout"),
        help="seconds before a child (or a command's process group) is killed "
        "(default 120; 3600 for a command)",
    )
    m.add_argument(
        "--serial",
        action="store_true",
        help="one child at a time (by default a child settles while the next one works; "
        "commands and services always run one at a time)",
    )
    m.add_argument(
        "--no-purge",
        dest="purge",
        action="store_false",
        help="workloads: skip the final 'purged' reading (allocator asked to return free memory)",
    )


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``-- CMD``, ``--as-deployed`` and the ``--serve`` group (tune takes them too)."""
    parser.add_argument(
        "command",
        nargs="*",
        metavar="-- CMD [ARGS...]",
        help="run this command (any language) under each variant instead of the workloads",
    )
    parser.add_argument(
        "--as-deployed",
        action="store_true",
        help="measure forked Python workers as deployed: allocscope's hook does not turn "
        "jemalloc's background thread back on after fork (by default it does, and says so)",
    )
    s = parser.add_argument_group("your own service (--serve)")
    s.add_argument(
        "--serve",
        metavar="'CMD {port}'",
        help="start this server; {port} is replaced by a free loopback port",
    )
    s.add_argument("--ready", default="/", metavar="PATH", help="ready when GET PATH answers 2xx")
    s.add_argument("--ready-timeout", default="30s", metavar="D", help="default 30s")
    s.add_argument(
        "--load",
        type=whole("load"),
        metavar="N",
        help="send N requests (with --duration: whichever ends first)",
    )
    s.add_argument("--duration", metavar="D", help="load for this long: 30s, 5m, 8h")
    s.add_argument(
        "--concurrency",
        "-c",
        type=whole("concurrency"),
        default=32,
        metavar="N",
        help="connections (default 32)",
    )
    s.add_argument(
        "--load-procs",
        type=whole("load-procs"),
        metavar="N",
        default=min(2, os.cpu_count() or 1),
        help="processes of the built-in load generator (default: 2, 1 on one CPU)",
    )
    s.add_argument("--url", default="/", metavar="PATH", help="GET this path (default /)")
    s.add_argument(
        "--requests",
        metavar="FILE",
        help='requests, one JSON per line: {"method", "path", "headers", "body"}',
    )
    s.add_argument(
        "--load-cmd",
        metavar="'CMD {url}'",
        help="run your own load generator (wrk, k6, ...) instead; {url} is the server's base URL",
    )
    s.add_argument(
        "--warm",
        default="2s",
        metavar="D",
        help="warm-up load before measuring (default 2s; 0 for none)",
    )
    s.add_argument("--idle", metavar="S,S", help="the older name of --settle for a service")
    s.add_argument(
        "--grace", default="5s", metavar="D", help="SIGTERM, then SIGKILL after this (default 5s)"
    )
    s.add_argument(
        "--progress-every",
        default="30s",
        metavar="D",
        help="a progress line and a results save this often during long loads (default 30s)",
    )


def settle_from(args: argparse.Namespace) -> tuple[float, ...] | None:
    """--settle (or --idle, its older name for a service); None: the kind's default."""
    if args.idle is not None and (args.serve is None or args.settle is not None):
        raise UsageError("--idle is the older name of --settle for --serve: give --settle")
    text = args.settle if args.settle is not None else args.idle
    return parse_settle(text) if text is not None else None


def wants_target(args: argparse.Namespace) -> bool:
    """A user's command (`-- CMD`) or service (`--serve`) rather than built-in workloads."""
    return bool(args.command) or args.serve is not None or bool(getattr(args, "dashdash", False))


def variants_from(args: argparse.Namespace, *, single: bool = False) -> list[Variant]:
    """The variants the flags name; ``bench`` (single) runs glibc when none is named."""
    specs = args.variant or (["glibc"] if single and not args.variants_file else [])
    return select(
        specs,
        args.variants_file,
        pythonmalloc=args.pythonmalloc,
        libs=parse_lib_overrides(args.lib),
        lib_dirs=args.lib_dir,
    )


def service_from(args: argparse.Namespace) -> Service:
    return Service(
        command=args.serve,
        load=args.load,
        duration=parse_duration(args.duration, "--duration") if args.duration else None,
        load_cmd=args.load_cmd,
        ready=args.ready,
        ready_timeout=parse_duration(args.ready_timeout, "--ready-timeout"),
        concurrency=args.concurrency,
        procs=args.load_procs,
        url=args.url,
        requests_file=args.requests,
        warm=parse_duration(args.warm.strip(), "--warm", zero=True),
        grace=parse_duration(args.grace, "--grace"),
        progress_every=parse_duration(args.progress_every, "--progress-every"),
    )


def plan_from(
    args: argparse.Namespace, *, default_workloads: Sequence[str], single: bool = False
) -> Plan:
    """The checked plan the flags describe (PlanError, VariantError, ...: exit 3)."""
    target = wants_target(args)
    if args.command and args.serve is not None:
        raise UsageError("give either -- CMD or --serve, not both")
    if target and args.workload:
        raise UsageError("-w chooses a built-in workload; with -- CMD or --serve, leave it out")
    settle = settle_from(args)
    params = {k: getattr(args, k) for k in PARAM_FLAGS if getattr(args, k) is not None}
    plan = make(
        variants_from(args, single=single),
        workloads=() if target else (args.workload or default_workloads),
        command=args.command if target and args.serve is None else None,
        service=service_from(args) if args.serve is not None else None,
        repeats=parse_repeats(args.repeats) if args.repeats is not None else None,
        warmup=args.warmup,
        seed=args.seed,
        settle=settle,
        interval=args.interval,
        timeout=args.timeout,
        serial=args.serial,
        purge=args.purge,
        scale=args.scale,
        params=params,
        precision=args.target / 100,
        budget=args.budget,
        as_deployed=args.as_deployed,
    )
    if single and (len(plan.variants) != 1 or len(plan.workloads) > 1):
        raise PlanError("bench runs one variant on one workload; use allocscope compare for more")
    return plan
