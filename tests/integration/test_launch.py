"""The launcher as the container runs it: ``python launch.py`` with a vendor root.

Failures run the interpreter with ``-S`` (no site-packages), so only the vendor directory
can provide granian, as in the runtime image. Successes use a vendor directory that is this
virtualenv's site-packages, then speak HTTP to the server the launcher exec'd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import psutil
import pytest

from allocscope import exitcodes
from tests.conftest import JEMALLOC_VERSION, child_env
from tests.integration.service_server import LAUNCHER, SERVE, serving

pytestmark = pytest.mark.timeout(120)

TAG = sys.implementation.cache_tag
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


def launch(*flags: str, site: bool = False, **env: str) -> tuple[int, dict[str, Any]]:
    """Run the launcher to failure; return its exit code and its one JSON line."""
    command = [sys.executable, *([] if site else ["-S"]), str(LAUNCHER), *flags]
    proc = subprocess.run(
        command, env=child_env(**env), capture_output=True, text=True, timeout=60, check=False
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stderr
    return proc.returncode, json.loads(lines[0])


def test_missing_vendor_root_is_111(tmp_path: Path) -> None:
    code, line = launch(ALLOCSCOPE_VENDOR_ROOT=str(tmp_path / "nowhere"))
    assert code == exitcodes.VENDOR_MISSING == 111
    assert line["event"] == "launch_failed" and line["error"] == "vendor_missing"
    assert line["exit_code"] == 111 and "does not exist" in line["message"]


def test_empty_vendor_root_is_111(tmp_path: Path) -> None:
    code, line = launch("--vendor-root", str(tmp_path))
    assert code == 111 and line["error"] == "vendor_missing" and line["wanted"] == TAG


def test_missing_server_is_112(tmp_path: Path) -> None:
    (tmp_path / TAG).mkdir()
    code, line = launch(ALLOCSCOPE_VENDOR_ROOT=str(tmp_path))
    assert code == exitcodes.SERVER_MISSING == 112
    assert line["error"] == "server_missing" and line["module"] == "granian"


def test_only_vendor_dir_for_another_abi_is_113(tmp_path: Path) -> None:
    other = tmp_path / "cpython-399"
    (other / "pkg").mkdir(parents=True)
    (other / "pkg" / "_speedups.cpython-399-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (other / "pkg" / "__init__.py").write_text("")
    code, line = launch(ALLOCSCOPE_VENDOR_ROOT=str(tmp_path))
    assert code == exitcodes.ABI_MISMATCH == 113
    assert line["error"] == "abi_mismatch"
    assert line["incompatible"] == ["pkg/_speedups.cpython-399-x86_64-linux-gnu.so"]
    assert "another ABI" in line["message"]


def test_several_vendor_dirs_none_ours_is_113(tmp_path: Path) -> None:
    for name in ("cpython-398", "cpython-399"):
        (tmp_path / name).mkdir()
    code, line = launch(ALLOCSCOPE_VENDOR_ROOT=str(tmp_path))
    assert code == 113 and line["found"] == ["cpython-398", "cpython-399"]


def _vendor(root: Path, name: str = TAG) -> Path:
    """A vendor root whose one directory is this virtualenv's site-packages."""
    root.mkdir(exist_ok=True)
    (root / name).symlink_to(SITE_PACKAGES, target_is_directory=True)
    return root


@pytest.mark.parametrize(
    ("env", "check"),
    [
        ({"ALLOCSCOPE_EXPECT_ALLOCATOR": "jemalloc"}, "allocator"),
        ({"ALLOCSCOPE_EXPECT_FIPS": "enforced"}, "fips"),
        ({"LD_PRELOAD": "/nonexistent/libjemalloc.so.2"}, "preload"),
    ],
    ids=["allocator", "fips", "preload"],
)
def test_unmet_expectation_fails_closed_with_114(
    tmp_path: Path, env: dict[str, str], check: str
) -> None:
    root = _vendor(tmp_path / "vendor")
    code, line = launch(site=True, ALLOCSCOPE_VENDOR_ROOT=str(root), **env)
    assert code == exitcodes.STARTUP_CHECK_FAILED == 114
    assert line["error"] == "startup_check_failed"
    assert [f["name"] for f in line["failed"]] == [check]
    assert line["message"].startswith(f"{check}: ")


@pytest.mark.parametrize("check", ["1", "0"], ids=["checked", "unchecked"])
def test_unreadable_expectation_is_a_bad_setting(tmp_path: Path, check: str) -> None:
    """Checked or not: with the check off, every worker would crash reading it for /readyz."""
    root = _vendor(tmp_path / "vendor")
    env = {"ALLOCSCOPE_EXPECT_ALLOCATOR": "jemaloc", "ALLOCSCOPE_STARTUP_CHECK": check}
    code, line = launch(site=True, ALLOCSCOPE_VENDOR_ROOT=str(root), **env)
    assert code == exitcodes.USAGE
    assert line["error"] == "bad_setting"
    assert line["message"].startswith("ALLOCSCOPE_EXPECT_ALLOCATOR='jemaloc': expected one of")


def test_allocscope_serve_fails_closed_too() -> None:
    proc = subprocess.run(
        [*SERVE],
        env=child_env(ALLOCSCOPE_EXPECT_FIPS="enforced", PORT="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 114
    [line] = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert line["error"] == "startup_check_failed" and line["failed"][0]["name"] == "fips"


@pytest.mark.parametrize("value", ["eighty", "0", "70000"])
def test_bad_port_is_a_usage_error(value: str) -> None:
    proc = subprocess.run(
        [*SERVE], env=child_env(PORT=value), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == exitcodes.USAGE
    [line] = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert line["error"] == "bad_setting" and "PORT" in line["message"]


@pytest.mark.parametrize(("name", "how"), [(TAG, "exact"), ("cpython-000", "fallback")])
def test_launcher_execs_the_server(tmp_path: Path, jemalloc: str, name: str, how: str) -> None:
    root = _vendor(tmp_path / "vendor", name)
    env = child_env(
        HOST="127.0.0.1",
        ALLOCSCOPE_VENDOR_ROOT=str(root),
        LD_PRELOAD=jemalloc,
        ALLOCSCOPE_EXPECT_ALLOCATOR="jemalloc",
    )
    with serving([sys.executable, str(LAUNCHER)], env=env) as server:
        assert (
            server.get("/").json()["allocator"] == f"jemalloc {JEMALLOC_VERSION} (via LD_PRELOAD)"
        )
        [line] = server.events("launch")
        # exec: the launcher's own process became granian's main process.
        assert "granian" in psutil.Process(server.proc.pid).cmdline()
        assert os.path.basename(line["vendor"]) == name and line["vendor_match"] == how
        assert line["cache_tag"] == TAG and line["abi"] == sysconfig.get_config_var("SOABI")
        assert line["server"] == "granian" and line["server_version"].startswith("2.")
        assert line["port"] == server.port and line["threads"] == 5
        assert line["checks"] == {"allocator": True, "preload": True}
