"""Purging really returns memory: jemalloc's resident bytes drop after freeing and purging."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import allocator_path, child_env, run_allocscope

CHILD = """
import json
from allocscope.probe import allocator, jemalloc, purge
info = allocator.detect()
je = jemalloc.bind(info.path)
blocks = [bytearray(64 * 1024) for _ in range(2000)]  # ~128 MiB in 64 KiB pieces
del blocks
before = je.stats().resident
said = purge.release(info)
after = je.stats().resident
print(json.dumps({"before": before, "after": after, "said": said}))
"""


def test_jemalloc_purge_lowers_resident(jemalloc: str) -> None:
    # A long decay keeps freed pages dirty until we purge them.
    env = child_env(LD_PRELOAD=jemalloc, MALLOC_CONF="dirty_decay_ms:60000,muzzy_decay_ms:60000")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    import json

    r = json.loads(proc.stdout)
    assert r["said"].startswith("jemalloc arena.4096.purge")
    assert r["before"] - r["after"] > 64 * 2**20, r


@pytest.mark.parametrize("name", ["glibc", "tcmalloc", "mimalloc"])
def test_info_purge_under_each_allocator(name: str) -> None:
    env = child_env() if name == "glibc" else child_env(LD_PRELOAD=allocator_path(name))
    proc = run_allocscope("info", "--purge", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(name)
