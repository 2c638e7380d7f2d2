"""Flags for ``compare``/``bench`` on the user's own program: ``-- CMD`` or ``--serve``."""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

from allocscope.bench.options import PlanError, parse_settle

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, flag: str, *, zero: bool = False) -> float:
    """'500ms', '60s', '5m', '8h' or plain seconds; 0 only where ``zero`` allows it."""
    m = _DURATION.match(text)
    if not m:
        raise PlanError(f"{flag} {text!r}: expected a duration like 30s, 5m or 8h")
    value = float(m.group(1)) * _UNIT[m.group(2)]
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise PlanError(f"{flag} {text!r}: must be greater than 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        type=int,
        metavar="N",
        help="send N requests (with --duration: whichever ends first)",
    )
    s.add_argument("--duration", metavar="D", help="load for this long: 30s, 5m, 8h")
    s.add_argument(
        "--concurrency", "-c", type=int, default=32, metavar="N", help="connections (default 32)"
    )
    s.add_argument(
        "--load-procs",
        type=int,
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
    s.add_argument(
        "--idle",
        default="1,5",
        metavar="S,S",
        help="read RSS this many seconds after the load (default 1,5; the last is 'after idle')",
    )
    s.add_argument(
        "--grace", default="5s", metavar="D", help="SIGTERM, then SIGKILL after this (default 5s)"
    )
    s.add_argument(
        "--progress-every",
        default="30s",
        metavar="D",
        help="a progress line and a results save this often during long loads (default 30s)",
    )


@dataclass(frozen=True)
class ServeOptions:
    template: str
    ready: str
    ready_timeout: float
    requests: int | None
    duration: float | None
    concurrency: int
    procs: int
    url: str
    requests_file: str | None
    load_cmd: str | None
    warm: float
    idle: tuple[float, ...]
    grace: float
    progress_every: float

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """Checked --serve options; PlanError (exit 3) for anything that cannot work."""
    template = args.serve
    if not template.strip():
        raise PlanError("--serve: the command is empty")
    if "{port}" not in template:
        raise PlanError(
            "--serve: the command has no {port}: say where the free port goes, "
            "e.g. --serve 'gunicorn -b 127.0.0.1:{port} app:app'"
        )
    try:
        shlex.split(template)
    except ValueError as e:
        raise PlanError(f"--serve: cannot split the command: {e}") from None
    if args.load is None and args.duration is None and not args.load_cmd:
        raise PlanError("--serve needs --load N, --duration D or --load-cmd")
    if args.load is not None and args.load < 1:
        raise PlanError(f"--load must be 1 or more, not {args.load}")
    if args.concurrency < 1 or args.load_procs < 1:
        raise PlanError("--concurrency and --load-procs must be 1 or more")
    if args.load_cmd and "{url}" not in args.load_cmd:
        raise PlanError("--load-cmd has no {url}: e.g. --load-cmd 'wrk -d10s {url}/'")
    for flag, path in (("--ready", args.ready), ("--url", args.url)):
        if not path.startswith("/"):
            raise PlanError(f"{flag} {path!r}: expected a path starting with /")
    warm = parse_duration(args.warm.strip(), "--warm", zero=True)
    return ServeOptions(
        template=template,
        ready=args.ready,
        ready_timeout=parse_duration(args.ready_timeout, "--ready-timeout"),
        requests=args.load,
        duration=parse_duration(args.duration, "--duration") if args.duration else None,
        concurrency=args.concurrency,
        procs=args.load_procs,
        url=args.url,
        requests_file=args.requests,
        load_cmd=args.load_cmd,
        warm=warm,
        idle=parse_settle(args.idle),
        grace=parse_duration(args.grace, "--grace"),
        progress_every=parse_duration(args.progress_every, "--progress-every"),
    )


def wants_target(args: argparse.Namespace) -> bool:
    """A user's command (`-- CMD`) or service (`--serve`) rather than built-in workloads."""
    return bool(args.command) or args.serve is not None or bool(getattr(args, "dashdash", False))
