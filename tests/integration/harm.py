"""Targets of every main-thread shape, and allocscope stopped in the middle of an attach.

Shared by tests/integration/test_attach_harm.py (a bounded count) and
benchmarks/attach_sweep.py (the long sweep). Each target answers ``ping`` with ``pong`` on
a loopback port (from its main thread when that is its shape, otherwise from a thread of
its own) and ``quit`` by exiting with status 42: a target that still answers and then
exits 42 was not harmed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

QUIT_STATUS = 42

_COMMON = """\
import itertools, os, signal, socket, socketserver, sys, threading, time

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            if line == b"quit\\n":
                sys.stdout.flush()
                os._exit(42)
            self.wfile.write(b"pong\\n")

server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)

def in_background(target, *args):
    threading.Thread(target=target, args=args, daemon=True).start()

def busy():
    while True:
        sum(itertools.repeat(1, 20_000_000))  # C code: no bytecode boundary, GIL held
"""

# The main thread's shape: what it does while allocscope attaches.
SHAPES = {
    "serve_forever": "server.serve_forever()\n",
    "sleep": "in_background(server.serve_forever)\nwhile True:\n    time.sleep(1)\n",
    "socket_read": ("in_background(server.serve_forever)\na, b = socket.socketpair()\na.recv(1)\n"),
    "lock_wait": (
        "in_background(server.serve_forever)\nlock = threading.Lock()\nlock.acquire()\n"
        "lock.acquire()\n"
    ),
    "busy_main": "in_background(server.serve_forever)\nbusy()\n",
    "busy_other": (
        "in_background(server.serve_forever)\nin_background(busy)\n"
        "while True:\n    time.sleep(0.5)\n"
    ),
    "200_threads": (
        "in_background(server.serve_forever)\nstop = threading.Event()\n"
        "for _ in range(200):\n    in_background(stop.wait)\nwhile True:\n    time.sleep(1)\n"
    ),
    "forking": (
        "in_background(server.serve_forever)\nwhile True:\n    pid = os.fork()\n"
        "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n    time.sleep(0.005)\n"
    ),
    "signal_storm": (
        "in_background(server.serve_forever)\nseen = [0]\n"
        "signal.signal(signal.SIGUSR1, lambda *a: seen.__setitem__(0, seen[0] + 1))\n"
        "def storm():\n    while True:\n        os.kill(os.getpid(), signal.SIGUSR1)\n"
        "        time.sleep(0.001)\nin_background(storm)\nwhile True:\n    time.sleep(1)\n"
    ),
}


@dataclass
class Target:
    shape: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict[str, str]:
        with open(f"/proc/{self.pid}/status", encoding="utf-8") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

    def answers(self, timeout: float = 20.0) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(b"ping\n")
                return s.makefile("rb").readline() == b"pong\n"
        except OSError:
            return False

    def harm(self, settle: float = 5.0) -> str | None:
        """What is wrong with the target now, or None: alive, untraced, unstopped, serving."""
        if self.proc.poll() is not None:
            return f"it exited with status {self.proc.returncode}"
        deadline = time.monotonic() + settle
        while True:  # the kernel detaches a dead tracer's threads at once; allow a moment
            status = self.status()
            traced, state = status["TracerPid"].strip(), status["State"].split()[0]
            if traced == "0" and state not in ("t", "T"):
                break
            if time.monotonic() > deadline:
                return f"TracerPid {traced}, State {state}"
            time.sleep(0.01)
        if not self.answers():
            return "it does not answer"
        return None

    def quit(self) -> int:
        with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(b"quit\n")
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return -999


@contextmanager
def target(shape: str) -> Iterator[Target]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _COMMON + SHAPES[shape]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        t = Target(shape, proc, port)
        deadline = time.monotonic() + 10
        while not t.answers(timeout=2) and time.monotonic() < deadline:
            time.sleep(0.05)
        if shape == "200_threads":  # until the threads are up
            while len(os.listdir(f"/proc/{proc.pid}/task")) < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
        yield t
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def attach_and_stop(pid: int, sig: int, delay: float, timeout: float = 3.0) -> str:
    """Start ``allocscope inspect --attach`` on ``pid``; once the target's TracerPid turns
    non-zero (the first ptrace hold), wait ``delay`` seconds and send ``sig`` to allocscope.
    How it ended: 'stopped' (signalled in time), 'finished' (done before the signal), or
    'never traced'."""
    cmd = [sys.executable, "-m", "allocscope", "inspect", "--attach", "--json",
           "--timeout", str(timeout), str(pid)]  # fmt: skip
    caller = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = f"/proc/{pid}/status"
    traced = False
    deadline = time.monotonic() + 60
    while caller.poll() is None and time.monotonic() < deadline:
        with open(status, "rb") as f:
            text = f.read()
        if b"TracerPid:\t0\n" not in text:
            traced = True
            break
    if traced:
        if delay:
            time.sleep(delay)
        with suppress(ProcessLookupError):
            caller.send_signal(sig)
    if caller.poll() is None and not traced:
        caller.kill()
    caller.communicate(timeout=120)
    if not traced:
        return "never traced"
    return "stopped" if caller.returncode == -sig or caller.returncode == 128 + sig else "finished"
