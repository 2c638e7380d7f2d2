"""The agent at node scale: scrape cost with 1,000 processes, and its memory over a long
run while processes come and go.

    .venv/bin/python benchmarks/agent_scale.py [--processes 1000] [--top 200]
        [--scrapes 7] [--soak 600] [--interval 5] [--churn 20]

Starts N processes (a fifth with jemalloc preloaded, half of those with its background
thread; 50 Python interpreters so the top of the RSS ranking is not all `sleep`; the rest
plain `sleep`), a real agent (`allocscope agent --top T`) on loopback, and times HTTP
scrapes of /metrics (the whole answer: reading /proc, inspecting the top T, the text
format). Then, for --soak seconds, replaces --churn processes every second (new pids,
new series) and scrapes every --interval seconds, printing the agent's RSS (VmRSS) and
thread count as it goes. Everything it starts is ended, the agent last.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from allocscope import libraries
from allocscope.inspect import process_tree
from allocscope.inspect.agent_limits import Limits

# The agent shares one collection among scrapes within fresh_s: wait longer between timed
# scrapes, so that each one pays for a collection of its own.
APART = Limits().fresh_s + 0.2


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signum)  # the finally below ends everything we started


def kinds(jemalloc: str) -> list[tuple[list[str], dict[str, str]]]:
    bg = {"LD_PRELOAD": jemalloc, "MALLOC_CONF": "background_thread:true"}
    return [
        (["sleep", "3600"], {"LD_PRELOAD": jemalloc}),
        (["sleep", "3600"], bg),
        *[(["sleep", "3600"], {})] * 8,
    ]


def spawn(argv: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}
    return subprocess.Popen(argv, env=env, start_new_session=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def scrape(port: int) -> tuple[float, int, int]:
    """Seconds for one /metrics, its bytes, and its samples."""
    t = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        body = r.read()
    seconds = time.perf_counter() - t
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return seconds, len(body), samples


def status(pid: int) -> tuple[float, int]:
    """VmRSS in MiB and the thread count of ``pid`` and its children (granian's worker
    process runs the collector), summed."""
    rss = threads = 0
    for member in process_tree(pid):
        with open(f"/proc/{member}/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f)
        rss += int(fields["VmRSS"].split()[0])
        threads += int(fields["Threads"])
    return rss / 1024, threads


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` and its children have used (load-independent,
    unlike wall time)."""
    ticks = 0
    for member in process_tree(pid):
        with open(f"/proc/{member}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--top", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=7)
    parser.add_argument("--soak", type=float, default=60.0, help="seconds of churn")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes")
    parser.add_argument("--churn", type=int, default=20, help="processes replaced per second")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started in the background
    jemalloc = libraries.find("jemalloc") or "libjemalloc.so.2"
    shapes = kinds(jemalloc)
    python = ([sys.executable, "-c", "import time; time.sleep(3600)"], {})
    procs = [spawn(*python) for _ in range(50)]
    procs += [spawn(*shapes[i % len(shapes)]) for i in range(args.processes - len(procs))]
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "allocscope", "agent", "--port", str(port), "--top", str(args.top)],
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not listening(port):  # the interpreters start, the agent binds
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("the agent did not start listening")
            time.sleep(0.2)
        users = sum(1 for n in os.listdir("/proc") if n.isdigit())
        print(f"processes: {args.processes} started, {users} pids on the machine; --top {args.top}")
        print(f"load average before: {loadavg()}")
        scrape(port)  # the first one fills the identity cache, as on a running agent
        cpu = cpu_seconds(agent.pid)
        runs = []
        for _ in range(args.scrapes):
            time.sleep(APART)
            runs.append(scrape(port))
        cpu = (cpu_seconds(agent.pid) - cpu) / args.scrapes  # idle between: next to nothing
        times = [r[0] for r in runs]
        print(
            f"scrape over HTTP: median {statistics.median(times) * 1000:.0f} ms, "
            f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
            f"({args.scrapes} scrapes, warm); {runs[-1][1] / 1024:.0f} KiB, {runs[-1][2]} samples"
        )
        print(f"agent CPU time per scrape (user + system): {cpu * 1000:.0f} ms")
        rss, threads = status(agent.pid)
        print(f"agent after the scrapes: rss {rss:.1f} MiB, {threads} threads")
        if args.soak <= 0:
            return
        print(f"soak: {args.soak:.0f} s, {args.churn} processes replaced per second, "
              f"a scrape every {args.interval:g} s")  # fmt: skip
        started = time.monotonic()
        next_scrape = started
        replaced = scrapes = 0
        samples: list[float] = []
        rng = random.Random(7)
        while (now := time.monotonic()) - started < args.soak:
            for _ in range(args.churn):
                i = rng.randrange(50, len(procs))  # the Python ones stay: the top stays busy
                os.killpg(procs[i].pid, signal.SIGKILL)
                procs[i].wait()
                procs[i] = spawn(*shapes[rng.randrange(len(shapes))])
                replaced += 1
            if now >= next_scrape:
                seconds, _, _ = scrape(port)
                scrapes += 1
                rss, threads = status(agent.pid)
                samples.append(rss)
                if scrapes == 1 or scrapes % max(1, int(60 / args.interval)) == 0:
                    print(f"  t={now - started:6.0f} s  rss {rss:6.1f} MiB  threads {threads}  "
                          f"scrape {seconds * 1000:.0f} ms  replaced {replaced}")  # fmt: skip
                next_scrape += args.interval
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        print(
            f"soak done: {scrapes} scrapes, {replaced} processes replaced; agent rss first "
            f"{samples[0]:.1f} MiB, last {samples[-1]:.1f} MiB, max {max(samples):.1f} MiB"
        )
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()
        agent.terminate()
        agent.wait(timeout=30)
        print(f"load average after:  {loadavg()}")


if __name__ == "__main__":
    main()
