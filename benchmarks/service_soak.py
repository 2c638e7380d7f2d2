"""A bounded memory soak: POST /echo under each allocator, worker RSS over time.

For each variant: start the service (1 worker, 5 threads), drive POST /echo with JSON
bodies from 100 B to ~400 KB (wrk Lua script, -t2 -c32) for --seconds, sampling the
worker's RSS with psutil every --interval; then stop the load and keep sampling for
--settle seconds to see what the allocator gives back. Loopback only.

    .venv/bin/python benchmarks/service_soak.py [--seconds 20] [--settle 10]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

from service_common import VARIANTS, describe, require_wrk, rss_mib, server

# 64 bodies whose sizes spread log-uniformly; wrk cycles through them.
LUA = r"""
math.randomseed(42)
local bodies = {}
for i = 1, 64 do
  local n = math.floor(2 ^ (math.random() * 12)) + 1
  local parts = {}
  for j = 1, n do
    parts[j] = string.format('"k%d":["%s",%d,%f]', j, string.rep("x", (j * 37) % 180), j, j / 7)
  end
  bodies[i] = "{" .. table.concat(parts, ",") .. "}"
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/echo", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def soak(variant: str, seconds: int, settle: int, interval: float) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    with server(variant) as s, tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(LUA)
        script.flush()
        print(f"\n{variant}: {describe(s.url('/'))}, worker pid {s.worker_pid}")
        started = time.monotonic()
        samples.append((0.0, rss_mib(s.worker_pid)))
        load = subprocess.Popen(
            [require_wrk(), "-t2", "-c32", f"-d{seconds}s", "-s", script.name, s.url("/echo")],
            stdout=subprocess.PIPE,
            text=True,
        )
        end = started + seconds + settle
        while time.monotonic() < end:
            time.sleep(interval)
            samples.append((time.monotonic() - started, rss_mib(s.worker_pid)))
        out, _ = load.communicate(timeout=30)
        rate = next((ln for ln in out.splitlines() if ln.startswith("Requests/sec")), "?")
        non_2xx = [ln.strip() for ln in out.splitlines() if "Non-2xx" in ln]
        print(f"  load: {rate.split()[-1]} req/s for {seconds} s {' '.join(non_2xx)}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="load phase")
    parser.add_argument("--settle", type=int, default=10, help="sampling after the load stops")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    results = {v: soak(v, args.seconds, args.settle, args.interval) for v in args.variants}
    print("\nworker RSS (MiB) over time; load ends at", args.seconds, "s")
    print(f"{'t (s)':>6} " + " ".join(f"{v:>15}" for v in results))
    rows = min(len(s) for s in results.values())
    for i in range(rows):
        t = next(iter(results.values()))[i][0]
        print(f"{t:>6.0f} " + " ".join(f"{s[i][1]:>15.1f}" for s in results.values()))
    print()
    for v, s in results.items():
        peak = max(r for _, r in s)
        print(f"{v}: start {s[0][1]:.1f} MiB, peak {peak:.1f} MiB, end {s[-1][1]:.1f} MiB")


if __name__ == "__main__":
    main()
