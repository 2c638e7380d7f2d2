"""allocscope's hook in a Python target (put first on PYTHONPATH by allocscope).

Standard library only; it never touches the user's code. It chains to the
``sitecustomize`` that would have run without it, then records, per process, in
``$ALLOCSCOPE_INJECT_DIR/events/<pid>.jsonl``: ``start`` (the allocator the probe sees
from inside, PYTHONMALLOC, effective MALLOC_CONF keys), ``trim`` (with
``ALLOCSCOPE_TRIM_EVERY``: each ``malloc_trim(0)`` and the RSS it gave back) and
``exit``. Forked children (gunicorn workers) start their own file and trim thread, and
get jemalloc's background thread back when fork() dropped it (``restored`` in their
``start``), unless ``ALLOCSCOPE_AS_DEPLOYED=1`` asks to measure the target as deployed.
"""

import atexit
import importlib
import json
import os
import sys
import threading
import time
from typing import Any

_DIR = os.environ.get("ALLOCSCOPE_INJECT_DIR", "")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Import the sitecustomize this one shadows, if there is one."""
    me = sys.modules.get("sitecustomize")
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError as e:
        if e.name != "sitecustomize":
            raise
    finally:
        sys.path[:] = saved
        if me is not None:
            sys.modules["sitecustomize"] = me


def _emit(event: str, **fields: Any) -> None:
    if not _DIR:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields})
    try:
        fd = os.open(
            os.path.join(_DIR, "events", f"{os.getpid()}.jsonl"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inside() -> dict[str, Any]:
    """The allocator as the probe sees it from inside this process."""
    try:
        from allocscope.probe import allocator
        from allocscope.probe.snapshot import jemalloc_report

        info = allocator.detect()
        report = jemalloc_report(info)
        conf = (
            [
                {"key": k.key, "in_effect": k.in_effect, "reason": k.reason}
                for k in report.malloc_conf
            ]
            if report
            else None
        )
        return {
            "allocator": info.name,
            "version": info.version,
            "path": info.path,
            "source": info.source,
            "python_allocator": info.python_allocator,
            "malloc_conf": conf,
            "jemalloc_options": report.options if report else None,
        }
    except Exception as e:  # the hook must never break the target
        return {"error": f"{type(e).__name__}: {e}"}


def _trim_loop(every: float, pid: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    while os.getpid() == pid:
        time.sleep(every)
        if os.getpid() != pid:
            return
        before = _rss()
        start = time.perf_counter()
        released = libc.malloc_trim(0)
        took = time.perf_counter() - start
        after = _rss()
        _emit(
            "trim",
            rss_before=before,
            rss_after=after,
            returned=before - after,
            released=released,
            took_s=round(took, 6),
        )


def _start(restored: dict[str, str] | None = None) -> None:
    _emit(
        "start",
        restored=restored,
        ppid=os.getppid(),
        argv=sys.argv[:8] if hasattr(sys, "argv") else None,
        python=sys.version.split()[0],
        executable=sys.executable,
        pythonmalloc=os.environ.get("PYTHONMALLOC"),
        # 0 when PYTHONMALLOC=malloc really took pymalloc out of the way
        pymalloc_blocks=sys.getallocatedblocks(),
        inside=_inside(),
    )
    every = os.environ.get("ALLOCSCOPE_TRIM_EVERY")
    if every:
        try:
            seconds = float(every)
        except ValueError:
            seconds = 0.0
        if seconds > 0:
            threading.Thread(
                target=_trim_loop, args=(seconds, os.getpid()), daemon=True, name="allocscope-trim"
            ).start()


def _restore() -> dict[str, str] | None:
    """jemalloc's background thread, lost at fork and not restored by the server's own
    hooks: turned back on so the variant is measured as asked (and the results say so)."""
    if os.environ.get("ALLOCSCOPE_AS_DEPLOYED") == "1":
        return None
    try:
        from allocscope import forksafe

        done = forksafe.after_fork()
    except Exception as e:  # the hook must never break the target
        return {"action": "failed", "detail": f"{type(e).__name__}: {e}"}
    return {"action": done.action, "detail": done.detail} if done.restored else None


def _after_fork() -> None:
    _start(_restore())


def _start_after_fork() -> None:
    """A forked worker is proved once the server's own post-fork hooks have run (gunicorn's
    post_fork restores jemalloc's background thread; at fork time it is always stopped);
    only what they left undone is restored by allocscope."""
    delay = float(os.environ.get("ALLOCSCOPE_FORK_SETTLE", "1.0") or 0)
    timer = threading.Timer(delay, _after_fork)
    timer.daemon = True
    timer.start()


def _heap() -> Any:
    """The allocator's own statistics at exit (jemalloc's stats, glibc's mallinfo2)."""
    try:
        import dataclasses

        from allocscope.probe import allocator, glibc
        from allocscope.probe.snapshot import jemalloc_report

        info = allocator.detect()
        if info.name == "jemalloc":
            report = jemalloc_report(info)
            return dataclasses.asdict(report.stats) if report else None
        if info.name == "glibc":
            return dataclasses.asdict(glibc.heap())
    except Exception as e:  # never break the target's exit
        return {"error": f"{type(e).__name__}: {e}"}
    return None


def _exit() -> None:
    _emit("exit", rss=_rss(), heap=_heap())


try:
    _chain()
finally:
    if _DIR:
        _start()
        atexit.register(_exit)
        os.register_at_fork(after_in_child=_start_after_fork)
