"""`allocscope inspect --all` on the host sees the image's containers, each by its id:
the default image on jemalloc, the same image told to run on glibc."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.container.dockerlib import SLOW, service

pytestmark = [pytest.mark.container, SLOW]

GLIBC = {"LD_PRELOAD": "", "MALLOC_CONF": "", "ALLOCSCOPE_EXPECT_ALLOCATOR": "glibc"}


def inspect_all() -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "allocscope", "inspect", "--all", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr  # 1: some host process maps two allocators
    processes: list[dict[str, Any]] = json.loads(proc.stdout)["processes"]
    return processes


def test_inspect_all_names_each_containers_allocator(image: str) -> None:
    with service(image) as je, service(image, env=GLIBC) as gl:
        je.wait_serving()
        gl.wait_serving()
        ids = {je.inspect()["Id"]: "jemalloc", gl.inspect()["Id"]: "glibc"}
        found: dict[str, list[dict[str, Any]]] = {}
        for p in inspect_all():
            box = p["container"] and p["container"]["container_id"]
            if box in ids:
                found.setdefault(box, []).append(p)
    assert set(found) == set(ids), "every container's processes are seen, by container id"
    for box, expected in ids.items():
        for p in found[box]:  # the server and its worker
            a = p["allocator"]
            assert a["name"] == expected, (p["pid"], p["cmdline"], a)
            assert a["conflict"] is None
            if expected == "jemalloc":
                # the image's own path, read through /proc/PID/root (not the host's)
                assert (a["source"], a["path"]) == ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
        # the workers probed FIPS at start-up: OpenSSL's provider is mapped in one of them
        assert any((p["crypto"]["fips_provider"] or "").endswith("fips.so") for p in found[box])
