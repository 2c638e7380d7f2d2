"""Stop allocscope at many moments of ``inspect --attach`` and count targets harmed.

    .venv/bin/python benchmarks/attach_sweep.py [--delays-ms 0:30:3] [--shapes a,b]

For every main-thread shape of tests/integration/harm.py, one target is started and
attached to again and again; each time allocscope gets SIGINT, SIGTERM, SIGHUP or SIGKILL
a given delay after the target's TracerPid turned non-zero (its first ptrace hold).
After each, the target must be alive, untraced (TracerPid 0), not stopped (State not t
or T) and answer on its port; at the end it must exit with its own status (42). Prints
one line per shape and the totals: cases, allocscope stopped in time, finished before
the signal, never caught traced, and harmed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' targets

from tests.integration import harm

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL)


def delays(text: str) -> list[float]:
    start, stop, step = (float(x) for x in text.split(":"))
    out, at = [], start
    while at <= stop:
        out.append(at / 1000)
        at += step
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delays-ms", default="0:30:3", help="start:stop:step (ms)")
    parser.add_argument("--shapes", default=",".join(harm.SHAPES))
    args = parser.parse_args()
    with open("/proc/loadavg", encoding="ascii") as f:
        print(f"load average: {f.read().strip()}")
    totals = {"cases": 0, "stopped": 0, "finished": 0, "never traced": 0, "harmed": 0}
    harms: list[str] = []
    started = time.monotonic()
    for shape in args.shapes.split(","):
        counts = dict.fromkeys(totals, 0)
        with harm.target(shape) as t:
            for delay in delays(args.delays_ms):
                for sig in SIGNALS:
                    how = harm.attach_and_stop(t.pid, sig, delay)
                    counts["cases"] += 1
                    counts[how] += 1
                    wrong = t.harm()
                    if wrong:
                        counts["harmed"] += 1
                        harms.append(f"{shape} {sig.name} +{delay * 1000:.0f} ms: {wrong}")
            status = t.quit()
            if status != harm.QUIT_STATUS:
                counts["harmed"] += 1
                harms.append(f"{shape}: exit status {status}, not {harm.QUIT_STATUS}")
        print(f"{shape:14} " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
        for key, value in counts.items():
            totals[key] += value
    print(f"total ({time.monotonic() - started:.0f} s): "
          + ", ".join(f"{k} {v}" for k, v in totals.items()))  # fmt: skip
    for line in harms:
        print("HARMED", line)


if __name__ == "__main__":
    main()
