"""The launcher as a gate in front of any command, and its start-up errors (issue 9, item 3).

Real gunicorn, real Flask, the real jemalloc; every failure is one JSON line and its exit
code, never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from allocscope import exitcodes
from tests.conftest import bg_threads, child_env
from tests.integration.appservers import REPO, each_worker, gunicorn, json_pid, port_of
from tests.integration.service_server import HOST, LAUNCHER, serving

pytestmark = pytest.mark.timeout(120)

TAG = sys.implementation.cache_tag
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


@pytest.fixture
def vendor_root(tmp_path: Path) -> str:
    """A vendor root whose one directory is this virtualenv's site-packages."""
    root = tmp_path / "vendor"
    root.mkdir()
    (root / TAG).symlink_to(SITE_PACKAGES, target_is_directory=True)
    return str(root)


def launch_fails(*argv: str, **env: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(LAUNCHER), *argv],
        env=child_env(PYTHONPATH=str(REPO), **env),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd="/",
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stderr
    return proc.returncode, json.loads(lines[0])


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_command_that_is_not_there_is_115(vendor_root: str) -> None:
    code, line = launch_fails("hypercornx", "app:app", ALLOCSCOPE_VENDOR_ROOT=vendor_root)
    assert code == exitcodes.COMMAND_NOT_FOUND == 115
    assert line["error"] == "command_not_found" and line["name"] == "hypercornx"
    assert line["message"].startswith("hypercornx: no console script of that name")


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("tests.apps.nosuch:app", "ModuleNotFoundError: No module named 'tests.apps.nosuch'"),
        ("tests.apps.flask_app:nope", "AttributeError: module 'tests.apps.flask_app' has no"),
    ],
)
def test_an_app_that_does_not_import_is_116(vendor_root: str, app: str, reason: str) -> None:
    code, line = launch_fails("gunicorn", app, ALLOCSCOPE_VENDOR_ROOT=vendor_root)
    assert code == exitcodes.APP_IMPORT_FAILED == 116
    assert line["error"] == "app_import_failed" and line["app"] == app
    assert f"the app {app} does not import: {reason}" in line["message"]


def test_app_check_can_be_turned_off(vendor_root: str, taken_port: int) -> None:
    """With the import check off the next check (the bind) is the one that fails."""
    code, line = launch_fails(
        "gunicorn", "-b", f"{HOST}:{taken_port}", "tests.apps.nosuch:app",
        ALLOCSCOPE_VENDOR_ROOT=vendor_root, ALLOCSCOPE_APP_CHECK="0",
    )  # fmt: skip
    assert code == exitcodes.BIND_FAILED and line["error"] == "bind_failed"


def test_a_port_in_use_is_117_for_a_command_and_the_demo(vendor_root: str, taken_port: int) -> None:
    code, line = launch_fails(
        "gunicorn", "-b", f"{HOST}:{taken_port}", "tests.apps.flask_app:app",
        ALLOCSCOPE_VENDOR_ROOT=vendor_root,
    )  # fmt: skip
    assert code == exitcodes.BIND_FAILED == 117
    assert line["message"] == f"cannot bind {HOST}:{taken_port}: the port is in use"
    code, line = launch_fails(ALLOCSCOPE_VENDOR_ROOT=vendor_root, HOST=HOST, PORT=str(taken_port))
    assert code == 117 and line["bind"] == f"{HOST}:{taken_port}"


@pytest.mark.parametrize(
    ("host", "reason"),
    [("192.0.2.1", "not an address of this host"), ("no-such-host.invalid", "not an address")],
)
def test_a_bad_bind_address_is_117(vendor_root: str, host: str, reason: str) -> None:
    code, line = launch_fails(ALLOCSCOPE_VENDOR_ROOT=vendor_root, HOST=host, PORT="8080")
    assert code == exitcodes.BIND_FAILED
    assert line["error"] == "bind_failed" and reason in line["message"]


def test_demo_flags_do_not_apply_to_a_command(vendor_root: str) -> None:
    code, line = launch_fails(
        "--workers", "2", "--", "gunicorn", "app:app", ALLOCSCOPE_VENDOR_ROOT=vendor_root
    )
    assert code == exitcodes.USAGE and "--workers is a setting of the demo" in line["message"]


def test_gunicorn_behind_the_gate_keeps_jemalloc_in_every_worker(
    vendor_root: str, jemalloc: str
) -> None:
    """The launcher checks, prints its line and becomes gunicorn with the environment as
    given; allocscope.gunicorn_conf turns jemalloc's background thread back on in each
    worker (fork leaves it off)."""
    command = gunicorn("sync", "-c", "python:allocscope.gunicorn_conf")[2:]
    assert command[0] == "gunicorn"
    env = child_env(
        PYTHONPATH=str(REPO),
        PORT=port_of(command),
        ALLOCSCOPE_VENDOR_ROOT=vendor_root,
        LD_PRELOAD=jemalloc,
        MALLOC_CONF="background_thread:true,dirty_decay_ms:500",
        ALLOCSCOPE_EXPECT_ALLOCATOR="jemalloc",
    )
    with serving([sys.executable, str(LAUNCHER), *command], env=env) as server:
        seen = each_worker(server, "/background-thread", json_pid)
        for pid, (status, doc) in seen.items():
            assert status == 200
            assert doc["background_thread"]["requested"] and doc["background_thread"]["live"]
            assert bg_threads(pid) >= 1, pid
        [line] = server.events("launch")
        # exec: the launcher's process became gunicorn's arbiter, with the environment as
        # given but for the vendor directory put first on PYTHONPATH.
        arbiter = psutil.Process(server.proc.pid)
        assert "gunicorn" in " ".join(arbiter.cmdline())
        vendor = os.path.join(vendor_root, TAG)
        assert arbiter.environ() == {**env, "PYTHONPATH": f"{vendor}:{REPO}"}
        assert line["command"] == command and line["resolved"] == "console script gunicorn"
        assert line["exec"][:3] == [sys.executable, "-m", "gunicorn"]
        assert line["app"] == "tests.apps.flask_app:app" and line["app_check"] == "imports"
        assert line["checks"] == {
            "allocator": True, "preload": True, "malloc_conf": True, "background_thread": True,
        }  # fmt: skip
        assert line["bind_check"] == [f"{HOST}:{port_of(command)}"]


def test_strict_gate_refuses_to_check_nothing(vendor_root: str) -> None:
    """ALLOCSCOPE_VERIFY_STRICT=1 (the image sets it): a gate with no expectation fails."""
    env = {"ALLOCSCOPE_VENDOR_ROOT": vendor_root, "MALLOC_CONF": "", "LD_PRELOAD": ""}
    code, line = launch_fails("gunicorn", "app:app", ALLOCSCOPE_VERIFY_STRICT="1", **env)
    assert code == exitcodes.STARTUP_CHECK_FAILED
    assert line["message"].startswith("nothing to check")


def test_anything_unexpected_is_one_line_and_70(tmp_path: Path) -> None:
    """A vendored allocscope whose checks blow up (here: on import) ends the launcher with
    one JSON line and exit 70, not a traceback."""
    package = tmp_path / "vendor" / TAG / "allocscope"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "expectations.py").write_text("raise RuntimeError('boom')\n")
    proc = subprocess.run(
        [sys.executable, "-S", str(LAUNCHER), "gunicorn", "app:app"],
        env=child_env(ALLOCSCOPE_VENDOR_ROOT=str(tmp_path / "vendor")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == exitcodes.INTERNAL == 70
    assert "Traceback" not in proc.stderr
    [line] = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert line["error"] == "internal" and line["message"] == "RuntimeError: boom"
