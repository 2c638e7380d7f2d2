"""verify's checks on hand-made snapshots (the probe itself is tested for real elsewhere)."""

from __future__ import annotations

import dataclasses

import pytest

from allocscope.expectations import Expectations, check
from allocscope.probe.snapshot import snapshot


@pytest.fixture(scope="module")
def snap():  # type: ignore[no-untyped-def]
    return snapshot()


def test_env_fallbacks() -> None:
    e = Expectations.from_environ(
        {"ALLOCSCOPE_EXPECT_ALLOCATOR": "jemalloc", "ALLOCSCOPE_EXPECT_MALLOC_CONF": "0"}
    )
    assert e.allocator == "jemalloc" and e.fips is None and not e.malloc_conf and e.preload


def test_env_empty_is_the_default_and_misspelt_is_refused() -> None:
    e = Expectations.from_environ(
        {"ALLOCSCOPE_EXPECT_ALLOCATOR": "", "ALLOCSCOPE_EXPECT_MALLOC_CONF": " "}
    )
    assert e == Expectations()
    with pytest.raises(ValueError, match=r"^ALLOCSCOPE_EXPECT_FIPS='strict': expected one of"):
        Expectations.from_environ({"ALLOCSCOPE_EXPECT_FIPS": "strict"})
    with pytest.raises(ValueError, match=r"^ALLOCSCOPE_EXPECT_MALLOC_CONF='ture' is not a"):
        Expectations.from_environ({"ALLOCSCOPE_EXPECT_MALLOC_CONF": "ture"})


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown allocator 'jemaloc'"):
        Expectations(allocator="jemaloc")
    with pytest.raises(ValueError, match="unknown FIPS level"):
        Expectations(fips="strict")


def test_allocator_check_passes_and_fails(snap) -> None:  # type: ignore[no-untyped-def]
    assert [c.passed for c in check(snap, Expectations(allocator=snap.allocator.name))] == [True]
    other = "jemalloc" if snap.allocator.name != "jemalloc" else "glibc"
    (c,) = check(snap, Expectations(allocator=other))
    assert not c.passed and c.detail.startswith(f"expected {other}")


def test_fips_levels_are_ordered(snap) -> None:  # type: ignore[no-untyped-def]
    on = dataclasses.replace(snap, fips=dataclasses.replace(snap.fips, state="on"))
    assert check(on, Expectations(fips="on"))[0].passed
    assert not check(on, Expectations(fips="enforced"))[0].passed
    assert not check(on, Expectations(fips="off"))[0].passed
    enforced = dataclasses.replace(snap, fips=dataclasses.replace(snap.fips, state="enforced"))
    assert check(enforced, Expectations(fips="on"))[0].passed


def test_malloc_conf_without_jemalloc_fails(snap) -> None:  # type: ignore[no-untyped-def]
    declared = dataclasses.replace(snap.allocator.declared, malloc_conf="narenas:2")
    alloc = dataclasses.replace(snap.allocator, declared=declared)
    s = dataclasses.replace(snap, allocator=alloc, jemalloc=None)
    (c,) = check(s, Expectations())
    assert c.name == "malloc_conf" and not c.passed and "no key is in effect" in c.detail
