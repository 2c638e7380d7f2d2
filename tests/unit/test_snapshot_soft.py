"""The snapshot never raises (issue 9 item 9): each fact that cannot be read becomes an
entry in ``errors``, whatever the allocator record claims."""

from __future__ import annotations

import dataclasses

import pytest

from allocscope.probe import allocator, snapshot
from allocscope.probe.errors import ProbeError


def test_a_library_that_only_claims_to_be_jemalloc_is_an_error_not_a_raise() -> None:
    real = allocator.detect()
    libc = real.path  # glibc serves the test runner: it has no mallctl
    liar = dataclasses.replace(real, name="jemalloc", path=libc)
    snap = snapshot.snapshot(allocator=liar, prove=True)
    assert snap.jemalloc is None
    assert any(e.startswith("jemalloc statistics: AttributeError") for e in snap.errors)
    assert "mallctl" in " ".join(snap.errors)


def test_a_detector_that_raises_gives_an_unknown_allocator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(proc_root: str = "/proc") -> allocator.AllocatorInfo:
        raise ProbeError("cannot read the maps: test")

    monkeypatch.setattr(allocator, "detect", broken)
    snap = snapshot.snapshot()
    assert snap.allocator.name == "unknown"
    assert snap.errors[0] == "allocator: cannot read the maps: test"
    assert "could not be detected" in snap.allocator.warnings[0]


def test_a_missing_proc_is_an_error_not_a_raise(tmp_path: object) -> None:
    snap = snapshot.snapshot(str(tmp_path))
    assert snap.memory is None
    assert any("cannot read" in e for e in snap.errors)
