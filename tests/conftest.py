"""Shared test plumbing: clean child environments and real allocator libraries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from allocscope import libraries

# Variables that would leak the parent's allocator or crypto setup into a child.
_LEAKY = ("LD_PRELOAD", "MALLOC_CONF", "MALLOC_ARENA_MAX", "PYTHONMALLOC", "GLIBC_TUNABLES",
          "OPENSSL_CONF", "OPENSSL_MODULES")  # fmt: skip


def debian_version(package: str) -> str:
    """The upstream version of an installed Debian package, as the allocator itself says
    it ('5.3.0' for libjemalloc2 5.3.0-1, '2.0.9' for libmimalloc2.0 2.0.9+ds-2): tests
    read it from the system, so a Debian update does not break them."""
    full = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return re.split(r"[-+~]", full.partition(":")[2] or full)[0]


JEMALLOC_VERSION = debian_version("libjemalloc2")
TCMALLOC_VERSION = debian_version("libtcmalloc-minimal4")
MIMALLOC_VERSION = debian_version("libmimalloc2.0")
GLIBC_VERSION = debian_version("libc6")


def leftover_children() -> list[Any]:
    """This test process's children but the two that live as long as it once started:
    multiprocessing's resource tracker and allocscope's run guard (bench/kinds/process/guard.py)."""
    import psutil

    from allocscope.bench.kinds.process import guard

    def lasting(p: psutil.Process) -> bool:
        try:
            return p.pid == guard.running() or "resource_tracker" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    return [p for p in psutil.Process().children() if not lasting(p)]


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _LEAKY and not k.startswith("ALLOCSCOPE_EXPECT")
    }
    env.update(extra)
    return env


def allocator_path(name: str) -> str:
    path = libraries.find(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-system-deps.sh")
    return path


@pytest.fixture
def jemalloc() -> str:
    return allocator_path("jemalloc")


@pytest.fixture
def tcmalloc() -> str:
    return allocator_path("tcmalloc")


@pytest.fixture
def mimalloc() -> str:
    return allocator_path("mimalloc")


def run_allocscope(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m allocscope ARGS`` in a fresh interpreter (the real binary, no shims)."""
    return subprocess.run(
        [sys.executable, "-m", "allocscope", *args],
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def info() -> Callable[..., dict[str, Any]]:
    """Run ``allocscope info`` in a child with extra environment; return the snapshot."""

    def probe(**extra: str) -> dict[str, Any]:
        proc = run_allocscope("info", env=child_env(**extra))
        assert proc.returncode == 0, proc.stderr
        snap: dict[str, Any] = json.loads(proc.stdout)
        snap["_stderr"] = proc.stderr
        return snap

    return probe


@pytest.fixture
def disguised(tmp_path: Any, jemalloc: str, tcmalloc: str) -> tuple[str, str]:
    """A renamed copy of jemalloc (libfast.so) and tcmalloc named libjemalloc.so.2."""
    import shutil

    renamed, liar = tmp_path / "libfast.so", tmp_path / "liar" / "libjemalloc.so.2"
    liar.parent.mkdir()
    shutil.copy(jemalloc, renamed)
    shutil.copy(tcmalloc, liar)
    return str(renamed), str(liar)


def as_nobody(*allocscope_args: str) -> subprocess.CompletedProcess[str]:
    """``allocscope ARGS`` as uid/gid 65534 (setpriv, util-linux): another user's view.
    Needs root, as CI runs; a missing tool or right fails the test, never skips it."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (CI runs as root): it drops to nobody")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is missing")
    return subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "allocscope", *allocscope_args],
        env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


Families = dict[str, list[tuple[dict[str, str], float]]]


def families(text: str) -> Families:
    """Prometheus text -> {family: [(labels, value)]} (``_created`` samples left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f.name: [(s.labels, s.value) for s in f.samples if not s.name.endswith("_created")]
        for f in text_string_to_metric_families(text)
    }


def bg_threads(pid: int) -> int:
    """jemalloc's background threads in ``pid``, by their name, from /proc."""
    tasks = Path(f"/proc/{pid}/task")
    return sum((t / "comm").read_text().strip() == "jemalloc_bg_thd" for t in tasks.iterdir())
