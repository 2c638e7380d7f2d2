"""Keep jemalloc's background thread across ``fork()``.

jemalloc's purging thread is a thread, and ``fork()`` copies only the thread that called
it; jemalloc's own at-fork handler then marks the thread off in the child. So under a
pre-fork server (gunicorn, granian with several workers) every worker runs without it
while ``opt.background_thread`` still reads true: ``MALLOC_CONF`` looks in effect, and
freed pages are returned only when the worker happens to allocate again.

``after_fork()`` turns the thread back on in the child when it was asked for (by
``MALLOC_CONF`` or a compiled-in default); ``install()`` runs it after every ``os.fork()``;
``allocscope.gunicorn_conf`` runs it in gunicorn's ``post_fork``. Servers that spawn fresh
interpreters (uvicorn ``--workers``, multiprocessing's spawn) need none of this: jemalloc
starts the thread itself in each new process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Literal

from allocscope.probe import allocator, jemalloc, native

__all__ = ["AfterFork", "BackgroundThread", "after_fork", "background_thread", "install"]

Action = Literal["restored", "running", "not_requested", "not_jemalloc", "failed"]


@dataclass(frozen=True)
class AfterFork:
    """What ``after_fork()`` found and did in process ``pid``."""

    pid: int
    action: Action
    detail: str

    @property
    def restored(self) -> bool:
        return self.action == "restored"


@dataclass(frozen=True)
class BackgroundThread:
    """jemalloc's background thread in this process: asked for, running, and turned back on."""

    requested: bool  # opt.background_thread: what MALLOC_CONF (or the build) asked for
    live: bool  # the state now: fork() leaves it off
    restores: int  # times after_fork() turned it back on in this process (0 or 1 in practice)

    @property
    def lost(self) -> bool:
        return self.requested and not self.live


class _Restores:
    """Restores per process: a child forked from a process that restored starts at 0."""

    def __init__(self) -> None:
        self.pid, self.count = os.getpid(), 0

    def add(self) -> None:
        self.now()
        self.count += 1

    def now(self) -> int:
        if self.pid != os.getpid():
            self.pid, self.count = os.getpid(), 0
        return self.count


_restores = _Restores()
_installed = False


@cache
def _binding() -> jemalloc.Jemalloc | None:
    """The jemalloc serving malloc, or None. Mappings survive fork, so once is enough."""
    serving = native.definer("malloc")
    if serving is None or allocator.allocator_of(serving) != "jemalloc":
        return None
    return jemalloc.bind(serving)


def background_thread() -> BackgroundThread | None:
    """The thread's state now; None when jemalloc does not serve malloc."""
    je = _binding()
    if je is None:
        return None
    return BackgroundThread(
        requested=bool(je.read("opt.background_thread", "bool")),
        live=bool(je.read("background_thread", "bool")),
        restores=_restores.now(),
    )


def after_fork() -> AfterFork:
    """Turn jemalloc's background thread back on if it was requested and is off. Never raises.

    Call it in each worker right after fork (gunicorn's ``post_fork``); calling it again, or
    in a process that was not forked, changes nothing.
    """
    pid = os.getpid()
    try:
        je = _binding()
        if je is None:
            return AfterFork(pid, "not_jemalloc", "jemalloc does not serve malloc: nothing to do")
        if not je.read("opt.background_thread", "bool"):
            return AfterFork(pid, "not_requested", "background_thread was not requested")
        if je.read("background_thread", "bool"):
            return AfterFork(pid, "running", "background_thread is running")
        je.set_background_thread(True)
    except Exception as e:  # a fork hook must not raise: report instead
        return AfterFork(pid, "failed", f"background_thread could not be restored: {e}")
    _restores.add()
    return AfterFork(pid, "restored", "background_thread was off after fork: turned back on")


def _hook() -> None:
    after_fork()


def install() -> bool:
    """Run ``after_fork()`` in the child after every ``os.fork()``; True the first time.

    Covers servers that fork through Python (gunicorn, multiprocessing's fork context);
    a server that forks from native code bypasses ``os.register_at_fork`` and needs its own
    hook (gunicorn's ``post_fork``, or a call at the top of the worker's app factory).
    """
    global _installed
    if _installed:
        return False
    os.register_at_fork(after_in_child=_hook)
    _installed = True
    return True
