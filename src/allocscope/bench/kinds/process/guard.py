"""What a run started does not outlive allocscope, however allocscope ends.

allocscope stops a run's command or server itself (:meth:`Watch.stop`), which needs it
alive. SIGKILLed, OOM-killed or crashed mid-run, it would leave the user's processes
running, re-parented to init: a server holding its port, a soak allocating for hours.

The guard is a small process of its own (its own session: Ctrl-C at the terminal does
not reach it) reading a pipe whose write end only allocscope holds, so the kernel closes
it however allocscope ends. Each run's marker (its hook directory, in the environment of
every process of the run, see :mod:`allocscope.bench.orphans`) is written to the pipe
before the run's command starts and withdrawn once the run is stopped. At end of file the
guard stops every process still carrying a marker it holds (SIGTERM, SIGKILL after the
grace), removes those hook directories, says so on stderr, and exits; after a normal end
nothing is held and it exits silently.

A process that cleared its environment is not found (as for :mod:`orphans`); the run's
own load processes end with allocscope by ``PR_SET_PDEATHSIG`` instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from allocscope.bench import orphans
from allocscope.bench.kinds.process import inject

GRACE_S = 5.0  # between SIGTERM and SIGKILL, as when allocscope stops a run itself
HOOK_PREFIX = "allocscope-hook-"

_guard: subprocess.Popen[bytes] | None = None  # started at the first run
_pipe: int | None = None  # its pipe's write end, held by allocscope alone


def hold(hook_dir: str) -> None:
    """Before a run starts: stop its processes if allocscope ends before :func:`release`."""
    _send(f"hold {hook_dir}")


def release(hook_dir: str) -> None:
    """The run is stopped and its hook directory removed: nothing left to guard."""
    _send(f"release {hook_dir}")


def running() -> int | None:
    """The guard's pid while it runs (it lives as long as this process once started)."""
    return _guard.pid if _guard is not None and _guard.poll() is None else None


def _send(line: str) -> None:
    global _pipe
    if _pipe is None or _guard is None or _guard.poll() is not None:
        if _pipe is not None:
            os.close(_pipe)
        _pipe = _start()
    os.write(_pipe, line.encode() + b"\n")  # one short write: atomic on a pipe


def _start() -> int:
    global _guard
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, False)  # no child of ours may keep the guard waiting
    try:
        _guard = subprocess.Popen(
            [sys.executable, "-m", "allocscope.bench.kinds.process.guard"],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != inject.DIR_ENV},
        )
    finally:
        os.close(read_end)
    return write_end


# --- the guard process -----------------------------------------------------------------


def _ours(hook_dir: str) -> bool:
    """Only a hook directory allocscope made is removed, whatever the pipe says."""
    parent, name = os.path.split(os.path.normpath(hook_dir))
    return name.startswith(HOOK_PREFIX) and parent == os.path.normpath(tempfile.gettempdir())


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    held: set[str] = set()
    with os.fdopen(0, "rb") as pipe:
        for raw in pipe:  # until allocscope's end closes the pipe
            verb, _, hook_dir = raw.decode(errors="replace").rstrip("\n").partition(" ")
            if verb == "hold" and _ours(hook_dir):
                held.add(hook_dir)
            elif verb == "release":
                held.discard(hook_dir)
    for hook_dir in sorted(held):
        left = {p: orphans.command(p) for p in orphans.marked(inject.DIR_ENV, hook_dir)}
        stopped = orphans.stop(left, GRACE_S)
        with contextlib.suppress(OSError):
            shutil.rmtree(hook_dir, ignore_errors=True)
        if stopped:
            words = ", ".join(f"{e.pid} ({e.command[:60]}) by {e.how}" for e in stopped)
            print(f"allocscope ended during a run: stopped {words}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
