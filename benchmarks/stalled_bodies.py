"""Health probes while clients stall their request bodies (issue 9, item 1).

Starts the service (1 worker, 5 threads, glibc) on loopback and keeps ``--stalled``
connections (50) that each send ``POST /echo`` with ``Content-Length: 100`` and one byte
of body, then nothing; a connection the server closes is opened again at once, so the
stall is sustained for the whole run. Meanwhile one client asks GET /healthz, /readyz,
/metrics and / in turn on fresh connections (as a kubelet does) for ``--seconds`` and
prints each endpoint's p50, p99 and worst latency, and the same without the stall for
comparison. The issue's aim: /healthz p99 < 100 ms under 50 stalled bodies.

    .venv/bin/python benchmarks/stalled_bodies.py [--seconds 10] [--stalled 50]
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import threading
import time

from service_common import HOST, server

HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
PATHS = ("/healthz", "/readyz", "/metrics", "/")


class Stall:
    """Keep ``count`` stalled-body connections open until stopped; reopen closed ones."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stall:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, sel: selectors.DefaultSelector) -> None:
        s = socket.create_connection((HOST, self.port), timeout=5)
        s.sendall(HEAD)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            for _ in range(self.count):
                self._open(sel)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:  # answered and closed (or reset): stall again
                        sel.unregister(s)
                        s.close()
                        self._open(sel)
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]


def probe(port: int, path: str, timeout: float = 5.0) -> float | None:
    """Seconds until a full answer to GET ``path`` on a fresh connection; None on timeout."""
    start = time.perf_counter()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    except OSError:
        return None
    return time.perf_counter() - start if reply.startswith(b"HTTP/1.1 200") else None


def measure(port: int, seconds: float) -> dict[str, list[float | None]]:
    times: dict[str, list[float | None]] = {p: [] for p in PATHS}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in PATHS:
            times[path].append(probe(port, path))
        time.sleep(0.01)
    return times


def summarise(times: dict[str, list[float | None]]) -> dict[str, dict[str, float | None]]:
    """Per path: probes, failed (no 200 within 5 s), p50, p99 and max in ms."""
    out: dict[str, dict[str, float | None]] = {}
    for path, samples in times.items():
        ok = sorted(x * 1000 for x in samples if x is not None)
        p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] if ok else None
        out[path] = {
            "probes": len(samples),
            "failed": len(samples) - len(ok),
            "p50_ms": statistics.median(ok) if ok else None,
            "p99_ms": p99,
            "max_ms": ok[-1] if ok else None,
        }
    return out


def report(label: str, summary: dict[str, dict[str, float | None]]) -> None:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for path, r in summary.items():
        print(
            f"{label:<22} {path:<9} {r['probes']:>6} {ms(r['p50_ms']):>8} {ms(r['p99_ms']):>8} "
            f"{ms(r['max_ms']):>8} {r['failed']:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="probing time per phase")
    parser.add_argument("--stalled", type=int, default=50, help="stalled-body connections")
    parser.add_argument("--json", action="store_true", help="one JSON document, no table")
    args = parser.parse_args()
    with server("glibc") as s:
        quiet = summarise(measure(s.port, args.seconds))
        with Stall(s.port, args.stalled) as stall:
            time.sleep(0.5)  # every stalled request has reached the app
            stalled = summarise(measure(s.port, args.seconds))
    if args.json:
        doc = {"no_stall": quiet, "stalled": stalled, "reopened": stall.opened - args.stalled}
        print(json.dumps(doc))
        return
    print("1 worker, 5 threads, glibc, loopback; latency of GET on a fresh connection")
    print(f"{'phase':<22} {'path':<9} {'probes':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'failed':>7}")  # fmt: skip
    report("no stall", quiet)
    report(f"{args.stalled} stalled bodies", stalled)
    print(f"stalled connections opened: {stall.opened} (each close is reopened at once)")


if __name__ == "__main__":
    main()
