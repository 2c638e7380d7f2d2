"""How long ``inspect --attach`` (the ptrace path) holds the target's main thread.

    .venv/bin/python benchmarks/attach_holds.py [--rounds 10] [--shapes sleep,busy_main]

The thread is stopped under ptrace only inside ``ptrace.Hold`` (seize, interrupt, read
registers, write the frame, set registers, detach); the calls themselves run untraced.
Each hold is timed from before PTRACE_SEIZE to after PTRACE_DETACH (an upper bound of the
time the thread is stopped), over ``--rounds`` attaches per target shape of
tests/integration/harm.py. Prints holds per attach, median / p99 / max hold, and the
total held per attach: the longest a SIGSTOP of allocscope could keep the thread stopped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' targets

from allocscope.inspect import ptrace
from allocscope.inspect.attach import attach
from allocscope.inspect.errors import AttachTimeout
from tests.integration import harm

holds: list[float] = []
_init, _release = ptrace.Hold.__init__, ptrace.Hold.release


def _timed_init(self: ptrace.Hold, tid: int, deadline: float) -> None:
    self.started = time.perf_counter()  # type: ignore[attr-defined]
    _init(self, tid, deadline)


def _timed_release(self: ptrace.Hold) -> None:
    _release(self)
    holds.append(time.perf_counter() - self.started)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--shapes", default="sleep,serve_forever,busy_main,200_threads")
    args = parser.parse_args()
    ptrace.Hold.__init__ = _timed_init  # type: ignore[method-assign]
    ptrace.Hold.release = _timed_release  # type: ignore[method-assign]
    with open("/proc/loadavg", encoding="ascii") as f:
        print(f"load average: {f.read().strip()}")
    for shape in args.shapes.split(","):
        per_attach: list[float] = []
        counts: list[int] = []
        timeouts = 0
        start = len(holds)
        with harm.target(shape) as t:
            for _ in range(args.rounds):
                before = len(holds)
                try:
                    attach(t.pid, timeout=10)
                except AttachTimeout:  # the GIL held elsewhere: exit 23, holds still counted
                    timeouts += 1
                counts.append(len(holds) - before)
                per_attach.append(sum(holds[before:]))
        mine = sorted(holds[start:])
        p99 = mine[min(len(mine) - 1, int(len(mine) * 0.99))]
        ms = {k: v * 1000 for k, v in (("median", statistics.median(mine)), ("p99", p99),
              ("max", mine[-1]), ("attach", statistics.median(per_attach)),
              ("attach_max", max(per_attach)))}  # fmt: skip
        print(f"{shape:14} {args.rounds} attaches, {statistics.median(counts):.0f} holds each: "
              f"hold median {ms['median']:.2f} ms, p99 {ms['p99']:.2f} ms, max {ms['max']:.2f} "
              f"ms; held per attach median {ms['attach']:.2f} ms, "
              f"max {ms['attach_max']:.2f} ms; {timeouts} timed out")  # fmt: skip


if __name__ == "__main__":
    main()
