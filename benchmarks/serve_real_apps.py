"""Real servers under each allocator variant, through allocscope compare --serve.

    .venv/bin/python benchmarks/serve_real_apps.py [--duration 60s] [--out results/apps]

Flask under gunicorn (2 workers: sync, then gthread), FastAPI under uvicorn and a Rack app
under Debian's Puma (the apps in tests/integration/apps), each with glibc, jemalloc-tuned
and (Python only) glibc-trim. Prints, per app and variant: throughput, p99, peak tree
RSS, tree RSS retained after the load (at the last --settle point) and the growth slope
during the load, with the load average.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from allocscope.bench.results import MB, load

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "integration" / "apps"
PY = sys.executable
PY_VARIANTS = ("glibc", "jemalloc-tuned", "name=glibc-trim1,trim=1")
APPS_TO_RUN = {
    "flask-gunicorn-sync": (
        f"{PY} -m gunicorn --chdir {APPS} -b 127.0.0.1:{{port}} -w 2 -k sync flask_app:app",
        PY_VARIANTS,
    ),
    "flask-gunicorn-gthread": (
        f"{PY} -m gunicorn --chdir {APPS} -b 127.0.0.1:{{port}} -w 2 -k gthread --threads 4 "
        "flask_app:app",
        PY_VARIANTS,
    ),
    "fastapi-uvicorn": (
        f"{PY} -m uvicorn --app-dir {APPS} fastapi_app:app --port {{port}} --log-level warning",
        PY_VARIANTS,
    ),
    "rack-puma": (
        f"puma -b tcp://127.0.0.1:{{port}} -t 4:4 {APPS / 'config.ru'}",
        ("glibc", "jemalloc"),
    ),
}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", default="60s")
    parser.add_argument(
        "--load",
        help="N requests per run (whichever of --load and --duration ends first): "
        "the same N for every variant compares memory fairly when the app keeps state",
    )
    parser.add_argument("--concurrency", default="16")
    parser.add_argument("--out", default="results/apps")
    parser.add_argument("--only", action="append", choices=sorted(APPS_TO_RUN))
    args = parser.parse_args()
    rows = []
    for name, (serve, variants) in APPS_TO_RUN.items():
        if args.only and name not in args.only:
            continue
        out = Path(args.out) / name
        before = loadavg()
        cmd = [
            PY,
            "-m",
            "allocscope",
            "compare",
            "-q",
            "-o",
            str(out),
            "--serve",
            serve,
            "--ready",
            "/healthz",
            "--duration",
            args.duration,
            "--warm",
            "5s",
            "--settle",
            "2,10",
            "--concurrency",
            args.concurrency,
        ]
        if args.load:
            cmd += ["--load", args.load]
        for v in variants:
            cmd += ["-V", v]
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        results = load(str(out / "results.json"))
        for run in results.runs:
            m = run.metrics
            growth = run.evidence.growth if run.evidence else None
            fit = growth.per_10k_requests if growth else None
            hour = growth.per_hour if growth else None
            rows.append(
                (
                    name,
                    run.variant,
                    run.ok,
                    m.get("rps", 0),
                    m.get("p99_ms", 0),
                    m.get("requests", 0),
                    m.get("rss_peak", 0) / MB,
                    m.get("rss_retained", 0) / MB,
                    f"{fit.slope:+.2f}±{2 * fit.stderr:.2f}" if fit else "-",
                    f"{hour.slope:+.0f}±{2 * hour.stderr:.0f}" if hour else "-",
                    fit.verdict if fit else "-",
                    before,
                    "; ".join(run.failures)[:60],
                )
            )
    print(
        f"{'app':24} {'variant':16} {'req/s':>7} {'p99 ms':>7} {'requests':>8} {'peak MiB':>9} "
        f"{'retained':>9} {'MiB/10k req':>12} {'MiB/h':>10} verdict   loadavg before"
    )
    for r in rows:
        print(
            f"{r[0]:24} {r[1]:16} {r[3]:7.0f} {r[4]:7.1f} {r[5]:8.0f} {r[6]:9.1f} {r[7]:9.1f} "
            f"{r[8]:>12} {r[9]:>10} {r[10]:9} {r[11]}" + ("" if r[2] else f" FAILED {r[12]}")
        )
    print(f"loadavg after: {loadavg()}")


if __name__ == "__main__":
    main()
