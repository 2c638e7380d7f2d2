"""Expectations a deployment has of its process, and the checks that hold it to them.

Shared by ``allocscope verify`` (CI gates, container health checks), the service's
``/readyz`` and the launcher's fail-closed start-up check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from allocscope.probe.snapshot import BACKGROUND_THREAD_LOST, Snapshot

ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "glibc")
FIPS_LEVELS = ("off", "on", "enforced")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Expectations:
    allocator: str | None = None  # one of ALLOCATORS
    fips: str | None = None  # one of FIPS_LEVELS
    malloc_conf: bool = True  # every MALLOC_CONF key must be in effect
    preload: bool = True  # every LD_PRELOAD entry must be loaded

    def __post_init__(self) -> None:
        if self.allocator is not None and self.allocator not in ALLOCATORS:
            raise ValueError(
                f"unknown allocator {self.allocator!r}; expected one of {', '.join(ALLOCATORS)}"
            )
        if self.fips is not None and self.fips not in FIPS_LEVELS:
            raise ValueError(
                f"unknown FIPS level {self.fips!r}; expected one of {', '.join(FIPS_LEVELS)}"
            )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Expectations:
        """ALLOCSCOPE_EXPECT_ALLOCATOR, _FIPS, _MALLOC_CONF and _PRELOAD (booleans, default 1).

        Unset or empty means the default; a ValueError names the variable it cannot read.
        """
        env = os.environ if environ is None else environ
        return cls(
            allocator=_choice(env, "ALLOCSCOPE_EXPECT_ALLOCATOR", ALLOCATORS),
            fips=_choice(env, "ALLOCSCOPE_EXPECT_FIPS", FIPS_LEVELS),
            malloc_conf=_flag(env, "ALLOCSCOPE_EXPECT_MALLOC_CONF"),
            preload=_flag(env, "ALLOCSCOPE_EXPECT_PRELOAD"),
        )


def _choice(env: Mapping[str, str], var: str, choices: tuple[str, ...]) -> str | None:
    value = env.get(var, "").strip()
    if value and value not in choices:
        raise ValueError(f"{var}={value!r}: expected one of {', '.join(choices)}")
    return value or None


def _flag(env: Mapping[str, str], var: str, default: bool = True) -> bool:
    word = env.get(var, "").strip().lower()
    if word and word not in _TRUE + _FALSE:
        raise ValueError(f"{var}={env[var]!r} is not a boolean (1 or 0)")
    return word in _TRUE if word else default


def strict_from_environ(environ: Mapping[str, str] | None = None) -> bool:
    """ALLOCSCOPE_VERIFY_STRICT (default 0): a gate that checks nothing fails."""
    return _flag(os.environ if environ is None else environ, "ALLOCSCOPE_VERIFY_STRICT", False)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str  # what was found; for a failure, why it failed


def check(snap: Snapshot, want: Expectations) -> list[Check]:
    checks = []
    alloc = snap.allocator
    if alloc.conflict:  # whatever was expected: two allocators in one process is a failure
        checks.append(Check("one_allocator", False, alloc.conflict))
    if want.allocator is not None:
        # Unconfirmed (its own symbol not resolved) is not proved: a library named like it.
        ok = alloc.name == want.allocator and alloc.confirmed_by is not None
        detail = f"{alloc.label} serves malloc"
        if alloc.confirmed_by is None:
            detail += ", not confirmed by its own symbol"
        if not ok:
            detail = f"expected {want.allocator}, but {detail}"
            if alloc.warnings:
                detail += "; " + "; ".join(alloc.warnings)
        checks.append(Check("allocator", ok, detail))
    if want.fips is not None:
        rank = FIPS_LEVELS.index
        state = snap.fips.state
        ok = state == "off" if want.fips == "off" else rank(state) >= rank(want.fips)
        detail = f"FIPS is {state}: {snap.fips.reason}"
        checks.append(Check("fips", ok, detail if ok else f"expected {want.fips}, but {detail}"))
    if want.preload and alloc.declared.ld_preload:
        missing = [f"{p.entry!r} ({p.problem})" for p in alloc.preload if not p.loaded]
        detail = "every LD_PRELOAD entry is loaded"
        if missing:
            detail = "LD_PRELOAD entries not loaded: " + ", ".join(missing)
        checks.append(Check("preload", not missing, detail))
    if want.malloc_conf and alloc.declared.malloc_conf:
        checks.append(_malloc_conf_check(snap))
    if snap.jemalloc is not None:
        requested = bool(snap.jemalloc.options.get("background_thread"))
        checks += background_thread_check(requested, snap.jemalloc.stats.background_thread)
    if snap.arena_limit is not None:  # proved only when the snapshot was asked to
        checks.append(Check("arena_limit", snap.arena_limit.proved, snap.arena_limit.reason))
    return checks


def background_thread_check(requested: bool, live: bool) -> list[Check]:
    """Asked for, yet off (fork() drops it): opt.background_thread alone reads as in effect."""
    if not requested:
        return []
    if live:
        return [Check("background_thread", True, "background_thread requested and running")]
    return [Check("background_thread", False, BACKGROUND_THREAD_LOST)]


def _malloc_conf_check(snap: Snapshot) -> Check:
    if snap.jemalloc is None:
        return Check(
            "malloc_conf",
            False,
            f"MALLOC_CONF is set but {snap.allocator.name} serves malloc: no key is in effect",
        )
    keys = snap.jemalloc.malloc_conf
    bad = [f"{k.key}: {k.reason}" for k in keys if not k.in_effect]
    if bad:
        said = snap.jemalloc.conf_messages
        tail = f" (jemalloc said: {' | '.join(said)})" if said else ""
        return Check(
            "malloc_conf", False, "MALLOC_CONF keys not in effect: " + "; ".join(bad) + tail
        )
    return Check("malloc_conf", True, f"all {len(keys)} MALLOC_CONF keys are in effect")
