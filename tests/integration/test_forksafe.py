"""allocscope.forksafe in real forked children, with the real jemalloc preloaded."""

from __future__ import annotations

import textwrap
from typing import Any

from tests.integration.pychild import run_json

# Forks once, and reports the state in the child before and after the hook ran.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from dataclasses import asdict
    from allocscope import forksafe

    if sys.argv[1] == "install":
        assert forksafe.install() is True and forksafe.install() is False
    parent = forksafe.background_thread()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        before = forksafe.background_thread()
        first, again = forksafe.after_fork(), forksafe.after_fork()
        after = forksafe.background_thread()
        doc = {
            "parent": parent and asdict(parent),
            "before": before and asdict(before),
            "first": asdict(first), "again": asdict(again),
            "after": after and asdict(after), "pid": os.getpid(),
        }
        os.write(w, json.dumps(doc).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 65536)
    os.waitpid(pid, 0)
    print(data.decode())
    """
)


def run(mode: str, **env: str) -> dict[str, Any]:
    doc: dict[str, Any] = run_json(SCRIPT, mode, **env)
    return doc


def test_fork_loses_the_thread_and_after_fork_restores_it(jemalloc: str) -> None:
    doc = run("plain", LD_PRELOAD=jemalloc, MALLOC_CONF="background_thread:true")
    assert doc["parent"] == {"requested": True, "live": True, "restores": 0}
    assert doc["before"] == {"requested": True, "live": False, "restores": 0}
    assert doc["first"]["action"] == "restored" and doc["first"]["pid"] == doc["pid"]
    assert doc["again"]["action"] == "running"
    assert doc["after"] == {"requested": True, "live": True, "restores": 1}


def test_install_restores_in_every_forked_child(jemalloc: str) -> None:
    doc = run("install", LD_PRELOAD=jemalloc, MALLOC_CONF="background_thread:true")
    # The at-fork hook ran before the child's code: nothing was lost, one restore counted.
    assert doc["before"] == {"requested": True, "live": True, "restores": 1}
    assert doc["first"]["action"] == "running"


def test_nothing_to_do_without_the_request_or_without_jemalloc(jemalloc: str) -> None:
    doc = run("install", LD_PRELOAD=jemalloc)
    assert doc["before"] == {"requested": False, "live": False, "restores": 0}
    assert doc["first"]["action"] == "not_requested"
    doc = run("install")
    assert doc["parent"] is None and doc["before"] is None
    assert doc["first"]["action"] == "not_jemalloc"


# The loss is reported by the library (snapshot warnings, verify), as /readyz and
# `allocscope verify` report it, then the hook fixes it.
DETECT = textwrap.dedent(
    """
    import json, os
    import allocscope
    from allocscope import Expectations, forksafe

    def report():
        verdict = allocscope.verify(Expectations())
        return {"warnings": list(allocscope.snapshot().warnings), "passed": verdict.passed,
                "failed": verdict.reasons()}

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        lost = report()
        forksafe.after_fork()
        os.write(w, json.dumps({"lost": lost, "fixed": report()}).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 65536)
    os.waitpid(pid, 0)
    print(json.dumps({"parent": report(), **json.loads(data)}))
    """
)


def test_snapshot_and_verify_report_the_loss(jemalloc: str) -> None:
    doc = run_json(DETECT, LD_PRELOAD=jemalloc, MALLOC_CONF="background_thread:true")
    assert doc["parent"] == {"warnings": [], "passed": True, "failed": []}
    lost = doc["lost"]
    assert lost["warnings"] == [
        "background_thread requested but not running (lost at fork): your deployment needs "
        "`-c python:allocscope.gunicorn_conf` (gunicorn) or `allocscope.forksafe.install()` "
        "(any os.fork) in each worker"
    ]
    assert not lost["passed"]
    # Both say so: the thread's own check, and MALLOC_CONF's key (opt.* still reads true).
    conf, thread = lost["failed"]
    assert conf.startswith(
        "malloc_conf: MALLOC_CONF keys not in effect: background_thread: "
        "requested true, but the thread is not running (lost at fork): your deployment needs "
        "`-c python:allocscope.gunicorn_conf`"
    )
    assert thread.startswith(
        "background_thread: background_thread requested but not running (lost at fork)"
    )
    assert doc["fixed"] == {"warnings": [], "passed": True, "failed": []}
