"""allocscope agent: every process of the node as Prometheus metrics (passive, /proc only)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import replace

from allocscope import exitcodes
from allocscope.errors import AllocscopeError
from allocscope.inspect.agent_limits import Limits

HELP = "serve /metrics for the node's processes: allocator, memory, FIPS provider, arenas"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    limits = Limits()
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=9464, help="port (default 9464)")
    parser.add_argument(
        "--top", type=_positive, default=50, help="export the N processes with most RSS"
    )
    parser.add_argument("--proc", default="/proc", help="procfs root (a host's /proc mounted)")
    parser.add_argument("--cgroup-root", default="/sys/fs/cgroup", help="cgroupfs root")
    parser.add_argument(
        "--pod-logs",
        default="/var/log",
        help="the node's /var/log, where the kubelet keeps pods/ and containers/ (names the"
        " pod and container of each process; absent off Kubernetes)",
    )
    parser.add_argument(
        "--node",
        default=os.environ.get("NODE_NAME", ""),
        help="the node's name on allocscope_agent_info (default $NODE_NAME, else the hostname)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive,
        default=limits.connections,
        metavar="N",
        help=f"connections served at once; more wait in the kernel's backlog of "
        f"{limits.backlog}, then are refused (default {limits.connections})",
    )
    parser.add_argument(
        "--header-timeout",
        type=_positive,
        default=limits.header_timeout_ms // 1000,
        metavar="S",
        help="a connection that has not sent its request line and headers in S seconds is "
        f"closed (default {limits.header_timeout_ms // 1000})",
    )
    parser.epilog = (
        "Exit codes: 0 stopped by SIGTERM or SIGINT, 3 the address cannot be bound, "
        "5 the service extra (granian) is missing."
    )


def run(args: argparse.Namespace) -> int:
    # granian and prometheus_client only here (the rest of inspect is stdlib); without
    # them cli.main names the extra to install (exit 5).
    from allocscope.inspect.agent import serve
    from allocscope.inspect.node import NodeCollector

    limits = replace(
        Limits(), connections=args.max_connections, header_timeout_ms=args.header_timeout * 1000
    )
    print(
        f"allocscope agent: serving /metrics on {args.host}:{args.port} (top {args.top}"
        f" processes by RSS, at most {limits.connections} connections)",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve(
            functools.partial(
                NodeCollector, args.top, args.proc, args.cgroup_root, args.pod_logs, args.node
            ),
            args.host,
            args.port,
            limits,
        )
    except OSError as e:  # expected here: the address is the user's
        raise AllocscopeError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    # Stopped, its worker joined: nothing is left to clean up, and the interpreter's own
    # teardown after granian took 0.45 s under load (of a one-second SIGTERM budget).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exitcodes.OK)
