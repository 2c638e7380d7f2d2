"""allocscope agent: every process of the node as Prometheus metrics (passive, /proc only)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from allocscope import exitcodes

HELP = "serve /metrics for the node's processes: allocator, memory, FIPS provider, arenas"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
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
    parser.epilog = "Exit codes: 0 stopped by SIGTERM or SIGINT, 3 the address cannot be bound."


def run(args: argparse.Namespace) -> int:
    # prometheus_client only here (the rest of inspect is stdlib); without it cli.main
    # names the extra to install (exit 5).
    from prometheus_client import CollectorRegistry, start_http_server

    from allocscope.inspect.node import NodeCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        NodeCollector(args.top, args.proc, args.cgroup_root, args.pod_logs, args.node)
    )
    try:
        server, thread = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as e:
        print(f"allocscope agent: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(
        f"allocscope agent: serving /metrics on {args.host}:{server.server_port}"
        f" (top {args.top} processes by RSS)",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    return exitcodes.OK
