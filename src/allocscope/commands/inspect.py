"""allocscope inspect: what another running process runs on, from /proc (any language)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator

from allocscope import exitcodes
from allocscope.errors import AllocscopeError, UsageError
from allocscope.inspect import SCHEMA, InspectError, ProcessReport, inspect_process
from allocscope.inspect.errors import Exited, NoSuchProcess
from allocscope.inspect.procinfo import all_pids
from allocscope.inspect.render import render, render_attach, timeline_line

HELP = "inspect running processes (any language): allocator, memory, crypto, container"


MAX_SECONDS = 86_400.0  # a day: past it time.sleep and deadlines overflow (inf, 1e308)


def _seconds(flag: str) -> Callable[[str], float]:
    """A flag's seconds: above 0, at most a day; otherwise bad input (exit 3, as documented)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value <= MAX_SECONDS:
            raise AllocscopeError(
                f"{flag} {text!r}: must be a number of seconds above 0 and at most {MAX_SECONDS:g}"
            )
        return value

    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise AllocscopeError(f"--count {text!r}: must be a whole number, at least 1")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pids", nargs="*", metavar="PID", help="process ids to inspect")
    parser.add_argument(
        "--all", action="store_true", help="every process in this pid namespace, by container"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help=f"print {SCHEMA} JSON")
    out.add_argument("--human", action="store_true", help="a readable page (the default)")
    parser.add_argument(
        "--watch",
        type=_seconds("--watch"),
        metavar="SECONDS",
        help="a timeline: inspect every SECONDS",
    )
    parser.add_argument(
        "--count", type=_count, metavar="N", help="with --watch: stop after N rounds"
    )
    parser.add_argument(
        "--attach",
        action="store_true",
        help="CPython targets: run the probe inside (ptrace, root or CAP_SYS_PTRACE): "
        "full snapshot, Python's view, and leak or fragmentation",
    )
    parser.add_argument(
        "--trim",
        action="store_true",
        help="with --attach: release free memory, report before/after",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds("--timeout"),
        default=10.0,
        help="with --attach: seconds to wait (10)",
    )
    parser.add_argument("--proc", default="/proc", help=argparse.SUPPRESS)  # fake trees in tests
    parser.epilog = (
        "Passive: reads /proc/PID only (no ptrace); another user's process needs root or "
        "CAP_SYS_PTRACE for its maps and environ. Exit codes: 0 ok, 1 two allocators mapped "
        "in a process (a failure), 2 usage, 3 no such process or not a pid, 20 a kernel "
        "thread, a zombie, or a process that exited while being read; --attach: 21 not a "
        "CPython (or not x86-64 without sys.remote_exec, or the probe failed inside), 22 ptrace "
        "not permitted or another tracer, 23 no answer within --timeout; --watch ends with 0 "
        "when every process has ended."
    )


def _pids(args: argparse.Namespace) -> list[int] | str:
    if args.all and args.pids:
        return "give PIDs or --all, not both"
    if not args.all and not args.pids:
        return "give at least one PID, or --all"
    if args.all:
        return all_pids(args.proc)
    pids = []
    for text in args.pids:
        try:
            pids.append(int(text))
        except ValueError:
            return f"not a process id: {text!r}"  # exit 3, as an impossible pid
    return pids


def _reports(
    pids: list[int], proc_root: str, every: bool
) -> Iterator[tuple[int, ProcessReport | InspectError]]:
    for pid in pids:
        try:
            yield pid, inspect_process(pid, proc_root)
        except InspectError as e:
            if not every:  # --all: kernel threads, zombies, exits are expected; skip
                yield pid, e


def run(args: argparse.Namespace) -> int:
    pids = _pids(args)
    if isinstance(pids, str):
        code = exitcodes.BAD_INPUT if pids.startswith("not a process id") else exitcodes.USAGE
        raise AllocscopeError(pids, code)
    if args.count is not None and args.watch is None:
        raise UsageError("--count needs --watch")
    if args.trim and not args.attach:
        raise UsageError("--trim needs --attach")
    if args.attach and (args.all or args.watch is not None):
        raise UsageError("--attach takes PIDs (not --all or --watch)")
    if args.attach:
        return _attach(args, pids)
    if args.watch is not None:
        return _watch(args, pids)
    results = [r for _, r in _reports(pids, args.proc, args.all)]
    reports = [r for r in results if isinstance(r, ProcessReport)]
    if args.all:  # grouped by container, the host's processes first
        reports.sort(key=lambda r: ((r.container and r.container.container_id) or "", r.pid))
    errors = [r for r in results if isinstance(r, InspectError)]
    for e in errors:
        print(f"allocscope inspect: {e}", file=sys.stderr)
    if args.json:
        doc = {"schema": SCHEMA, "processes": [r.to_dict() for r in reports]}
        doc["errors"] = [str(e) for e in errors]
        print(json.dumps(doc))
    else:
        print("\n\n".join(render(r, grouped=args.all) for r in reports))
    if errors:
        return errors[0].exit_code
    return exitcodes.CHECK_FAILED if any(r.failed for r in reports) else exitcodes.OK


def _attach(args: argparse.Namespace, pids: list[int]) -> int:
    """Passive report and the probe run inside, per PID; the first failure's exit code."""
    from allocscope.inspect.attach import SCHEMA as ATTACH_SCHEMA
    from allocscope.inspect.attach import attach

    code = exitcodes.OK
    for pid in pids:
        try:
            report = inspect_process(pid, args.proc)
            with _stop_signals():  # SIGTERM, SIGHUP as Ctrl-C: attach cleans up, exit 128+N
                inside = attach(pid, trim=args.trim, timeout=args.timeout)
        except InspectError as e:
            print(f"allocscope inspect: {e}", file=sys.stderr)
            code = code or e.exit_code
            continue
        if args.json:
            doc = {"schema": ATTACH_SCHEMA, "inspect": report.to_dict()}
            doc["attach"] = dataclasses.asdict(inside)
            print(json.dumps(doc))
        else:
            print(render(report) + "\n" + render_attach(inside))
        if report.failed:
            code = code or exitcodes.CHECK_FAILED
    return code


class _Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise as SIGINT does (the bench runner does the same, with psutil)."""

    def stop(signum: int, _frame: object) -> None:
        raise _Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _watch(args: argparse.Namespace, pids: list[int]) -> int:
    """One line (or JSON document) per process per round, until --count, Ctrl-C, or every
    process has ended: a process seen once that then exits is the normal end (exit 0)."""
    rounds = 0
    code = exitcodes.OK
    live = list(pids)
    seen: set[int] = set()
    while live and (args.count is None or rounds < args.count):
        if rounds:
            time.sleep(args.watch)
        targets = all_pids(args.proc) if args.all else live
        for pid, result in _reports(targets, args.proc, args.all):
            if isinstance(result, InspectError):
                live.remove(pid)  # it has gone: the others' timelines go on
                if isinstance(result, Exited) or (
                    pid in seen and isinstance(result, NoSuchProcess)
                ):
                    print(f"allocscope inspect: process {pid} has ended", file=sys.stderr)
                    continue
                print(f"allocscope inspect: {result}", file=sys.stderr)
                code = code or result.exit_code
            else:
                seen.add(pid)
                line = json.dumps(result.to_dict()) if args.json else timeline_line(result)
                print(line, flush=True)
                if result.failed:  # two allocators mapped: a failure in either format
                    code = code or exitcodes.CHECK_FAILED
        rounds += 1
    return code
