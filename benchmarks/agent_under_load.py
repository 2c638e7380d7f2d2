"""The agent under hostile load (issue 16, item 3): scrape latency and what it holds.

Starts ``allocscope agent`` (default limits) on loopback, then for ``--seconds``: 1,500
connections sending headers slowly (one line a second; the agent's header deadline cuts
each and it comes back at once), ``--scrapers`` (50) threads scraping /metrics back to
back, and short-lived processes started and ended meanwhile. Prints the scrapes' p50, p99
and worst latency and failures, the agent's memory (PSS: the worker's pages shared with
granian's main process count once), threads and fds sampled every 5 s (first, worst,
last), the same scrapes without the hostile clients for comparison, and how long
SIGTERM takes to end the agent under that load.

    .venv/bin/python benchmarks/agent_under_load.py [--seconds 60] [--slow 1500] [--scrapers 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.hostile import (
    SLOW_HEAD,
    SLOW_LINE,
    Held,
    Scrapes,
    Slow,
    churn,
    held,
    raise_fd_limit,
    scrape,
    scrapers,
)

MB = 1 << 20


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(port: int) -> None:
    for _ in range(300):
        try:
            scrape(port, timeout=5)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the agent did not answer")


def summary(name: str, s: Scrapes) -> None:
    lat = sorted(s.latencies)
    if not lat:
        print(f"{name}: no scrape answered, {len(s.failures)} failures")
        return
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"{name}: {len(lat)} scrapes, p50 {statistics.median(lat) * 1000:.0f} ms,"
        f" p99 {p99 * 1000:.0f} ms, worst {lat[-1] * 1000:.0f} ms, {len(s.failures)} failures"
    )


def sample(pid: int, every: float, stop: threading.Event, out: list[Held]) -> None:
    while not stop.is_set():
        out.append(held(pid))
        stop.wait(every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--slow", type=int, default=1500)
    parser.add_argument("--scrapers", type=int, default=50)
    args = parser.parse_args()
    raise_fd_limit(4 * args.slow + 1024)
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "allocscope", "agent", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(port)
        idle = held(agent.pid)
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"agent idle: PSS {idle.pss / MB:.1f} MiB, {idle.threads} threads, {idle.fds} fds")
        summary(f"{args.scrapers} scrapers alone, 10 s", scrapers(port, args.scrapers, 10))
        samples: list[Held] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(agent.pid, 5.0, stop, samples))
        with Slow(port, args.slow, SLOW_HEAD, SLOW_LINE, every=1.0) as slow, churn():
            sampler.start()
            time.sleep(2)
            result = scrapers(port, args.scrapers, args.seconds)
            stop.set()
            sampler.join()
            summary(
                f"{args.scrapers} scrapers + {args.slow} slow connections + process churn,"
                f" {args.seconds:g} s",
                result,
            )
            print(f"slow connections opened {slow.opened}, cut by the agent {slow.cut}")
            for what in ("pss", "threads", "fds"):
                vals = [getattr(h, what) for h in samples]
                scale, unit = (MB, " MiB") if what == "pss" else (1, "")
                print(
                    f"agent {what} over {len(vals)} samples: first {vals[0] / scale:.1f}{unit},"
                    f" worst {max(vals) / scale:.1f}{unit}, last {vals[-1] / scale:.1f}{unit}"
                )
            print(f"load average at the end: {os.getloadavg()[0]:.1f} (the clients share the CPUs)")
            start = time.perf_counter()
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(30)
            print(f"SIGTERM under load: exited {code} after {time.perf_counter() - start:.2f} s")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


if __name__ == "__main__":
    main()
