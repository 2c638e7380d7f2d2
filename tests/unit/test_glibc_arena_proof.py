"""The arena-limit proof in this very process (glibc serves the test runner's malloc)."""

from __future__ import annotations

import pytest

from allocscope.probe import glibc


def test_nothing_declared_is_no_proof() -> None:
    assert glibc.arena_limit_proof({}) is None


@pytest.mark.parametrize("value", ["abc", "", "0", "-2", "2abc", "0x2", " 2x"])
def test_a_value_glibc_does_not_read_as_written_is_never_proved(value: str) -> None:
    proof = glibc.arena_limit_proof({"MALLOC_ARENA_MAX": value})
    assert proof is not None and not proof.proved
    assert "unproved" in proof.reason


def test_a_limit_this_process_does_not_keep_is_not_in_effect() -> None:
    """The runner was started without MALLOC_ARENA_MAX: a limit of 1 cannot hold here once
    three threads allocate at once (the main arena plus one per thread)."""
    proof = glibc.arena_limit_proof({"MALLOC_ARENA_MAX": "1"})
    assert proof is not None and not proof.proved
    assert proof.arenas is not None and proof.arenas > 1
    assert "NOT in effect" in proof.reason


def test_two_different_limits_are_not_proved() -> None:
    env = {"MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.malloc.arena_max=3"}
    proof = glibc.arena_limit_proof(env)
    assert proof is not None and not proof.proved and "two different limits" in proof.reason


def test_tunables_are_read() -> None:
    env = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.malloc.arena_max=4"}
    assert glibc.declared_arena_limit(env) == [("GLIBC_TUNABLES=glibc.malloc.arena_max=4", "4")]
