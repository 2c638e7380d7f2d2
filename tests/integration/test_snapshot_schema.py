"""The documented schema (``allocscope info --schema``) matches what the probe emits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allocscope.probe.schema import describe
from allocscope.probe.snapshot import Snapshot
from tests.conftest import run_allocscope


def paths(value: Any, prefix: str = "") -> set[str]:
    found = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}{key}"
            found.add(path)
            if not path.endswith(("options", "providers", "packages")):  # free-form maps
                found |= paths(inner, path + ".")
    elif isinstance(value, list):
        for item in value:
            found |= paths(item, prefix.removesuffix(".") + "[].")
    return found


def test_every_emitted_field_is_documented(
    info: Callable[..., dict[str, Any]], jemalloc: str
) -> None:
    documented = {p for p, _ in describe(Snapshot)}
    for snap in (info(), info(LD_PRELOAD=jemalloc, MALLOC_CONF="narenas:2", LD_BIND_NOW="1")):
        snap.pop("_stderr")
        assert paths(snap) <= documented, paths(snap) - documented


def test_schema_is_printed() -> None:
    proc = run_allocscope("info", "--schema")
    assert proc.returncode == 0
    assert proc.stdout.startswith("# allocscope.snapshot/1\n")
    assert "jemalloc.malloc_conf[].in_effect" in proc.stdout
