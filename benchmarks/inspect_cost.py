"""What passive inspection costs: per process, `inspect --all`, and an agent scrape.

    .venv/bin/python benchmarks/inspect_cost.py [--sleepers 200]

Spawns N sleepers (a third with jemalloc preloaded, a third Python, the rest `sleep`),
then measures, in one run: inspect_process per process (first, with a cold identity
cache, then warm), `allocscope inspect --all --json` as a command, and the agent's
collector (a scrape) with --top N and with the default 50. Everything it starts is ended.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

from allocscope import libraries
from allocscope.inspect import inspect_process
from allocscope.inspect.node import NodeCollector


def spawn(n: int) -> list[subprocess.Popen[bytes]]:
    jemalloc = libraries.find("jemalloc") or ""
    kinds = [
        (["sleep", "600"], {"LD_PRELOAD": jemalloc}),
        ([sys.executable, "-c", "import time; time.sleep(600)"], {}),
        (["sleep", "600"], {}),
    ]
    procs = []
    for i in range(n):
        argv, extra = kinds[i % 3]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}
        procs.append(subprocess.Popen(argv, env=env, start_new_session=True))
    time.sleep(1.0 + n / 100)  # let the interpreters start
    return procs


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return f.read().strip()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleepers", type=int, default=200)
    args = parser.parse_args()
    print(f"load average before: {loadavg()}")
    procs = spawn(args.sleepers)
    try:
        pids = [p.pid for p in procs]
        cold = []
        for pid in pids:
            t = time.perf_counter()
            inspect_process(pid)
            cold.append(time.perf_counter() - t)
        warm = []
        for pid in pids:
            t = time.perf_counter()
            inspect_process(pid)
            warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "allocscope", "inspect", "--all", "--json"],
            capture_output=True, check=False,
        )  # fmt: skip
        all_time = time.perf_counter() - t
        total = len(os.listdir("/proc"))
        scrapes = {}
        for top in (args.sleepers, 50):
            collector = NodeCollector(top=top)
            list(collector.collect())  # warm the identity cache, as a running agent has it
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                list(collector.collect())
                runs.append(time.perf_counter() - t)
            scrapes[top] = statistics.median(runs)
        print(f"processes on the machine: ~{total} /proc entries, {args.sleepers} sleepers")
        print(f"inspect_process, first call per process (median) {ms(statistics.median(cold))}")
        print(f"inspect_process, warm (median)                    {ms(statistics.median(warm))}")
        print(f"inspect_process, warm (max)                       {ms(max(warm))}")
        print(f"inspect --all --json (a new command, exit {out.returncode})   {ms(all_time)}")
        for top, seconds in scrapes.items():
            print(f"agent scrape, --top {top:<4} (median of 3, warm)     {ms(seconds)}")
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()
    print(f"load average after:  {loadavg()}")


if __name__ == "__main__":
    main()
