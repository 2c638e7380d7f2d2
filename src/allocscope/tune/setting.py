"""One point of the space: an allocator and its knob values, as a compare variant.

A setting becomes the same ``-V`` spec ``compare`` accepts
(``name=...,lib=jemalloc,env=MALLOC_CONF=...``) and is parsed by compare's own parser
(:func:`allocscope.bench.variants.parse_spec`), so a tuned setting is proved in every run
exactly as a variant is, and anyone can re-measure it with ``allocscope compare -V``.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from allocscope.bench import variants
from allocscope.bench.variants import Libraries, Variant
from allocscope.tune.space import TRIM, Space, Value

# Short names for the knobs in a setting's name (the full names are in its env).
_SHORT = {
    "MALLOC_ARENA_MAX": "arenas",
    "glibc.malloc.trim_threshold": "trim_threshold",
    "glibc.malloc.mmap_threshold": "mmap_threshold",
    TRIM: "trim",
    "dirty_decay_ms": "dirty",
    "muzzy_decay_ms": "muzzy",
    "background_thread": "bg",
    "narenas": "arenas",
    "PYTHONMALLOC": "pymalloc",
}


def _show(value: Value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Setting:
    allocator: str
    values: tuple[tuple[str, Value], ...]  # (knob, value); None values are left out

    @property
    def name(self) -> str:
        parts = [self.allocator]
        for knob, value in self.values:
            short = _SHORT.get(knob) or re.sub(r"^(TCMALLOC|MIMALLOC)_", "", knob).lower()
            shown = "off" if knob == "PYTHONMALLOC" and value == "malloc" else _show(value)
            parts.append(f"{short}-{shown}")
        return ".".join(parts)

    def env(self) -> dict[str, str]:
        """The variables that carry this setting (LD_PRELOAD aside)."""
        env: dict[str, str] = {}
        conf, tunables = [], []
        for knob, value in self.values:
            if knob == TRIM:
                continue
            if knob == "PYTHONMALLOC" or knob.isupper():
                env[knob] = _show(value)
            elif knob.startswith("glibc."):
                tunables.append(f"{knob}={_show(value)}")
            else:  # a jemalloc option
                conf.append(f"{knob}:{_show(value)}")
        if conf:
            env["MALLOC_CONF"] = ",".join(conf)
        if tunables:
            env["GLIBC_TUNABLES"] = ":".join(tunables)
        return env

    @property
    def trim_every(self) -> float | None:
        trim = dict(self.values).get(TRIM)
        return float(trim) if isinstance(trim, int) and not isinstance(trim, bool) else None

    @property
    def key(self) -> tuple[object, ...]:
        """What the setting does (two names for one setting compare equal)."""
        return _key(self.allocator, self.env(), self.trim_every)

    def spec(self) -> str:
        """The ``-V`` spec compare accepts."""
        items = [f"name={self.name}"]
        if self.allocator != "glibc":
            items.append(f"lib={self.allocator}")
        items += [f"env={k}={v}" for k, v in self.env().items()]
        if self.trim_every is not None:
            items.append(f"trim={self.trim_every:g}")
        return ",".join(items)

    def variant(self, libs: Libraries | None = None) -> Variant:
        return variants.parse_spec(self.spec(), libs)


def grid(space: Space) -> Iterator[Setting]:
    """Every setting of the space, allocator by allocator."""
    python = space.of("python")
    for allocator in space.allocators():
        knobs = [*space.of(allocator), *python]
        for combo in itertools.product(*(k.values for k in knobs)):
            values = tuple((k.name, v) for k, v in zip(knobs, combo, strict=True) if v is not None)
            yield Setting(allocator, values)


def _key(allocator: str, env: Mapping[str, str], trim: float | None) -> tuple[object, ...]:
    """A setting's effect: the order of MALLOC_CONF's pairs or of the tunables is not."""
    items = {k: ",".join(sorted(v.split(","))) if k == "MALLOC_CONF" else
             ":".join(sorted(v.split(":"))) if k == "GLIBC_TUNABLES" else v
             for k, v in env.items()}  # fmt: skip
    return (allocator, tuple(sorted(items.items())), trim)


def _builtin_keys() -> set[tuple[object, ...]]:
    """The built-in variants' settings (jemalloc-tuned, glibc-arena2, ...)."""
    return {_key(b.allocator, b.env, b.trim_every) for b in variants.BUILTINS.values()}


def sample(
    space: Space, n: int, rng: random.Random, *, skip: Sequence[Setting] = ()
) -> list[Setting]:
    """``n`` distinct settings: first the built-in variants the space holds (the settings
    people already ship), then drawn in turn from each allocator (so jemalloc's large
    grid does not crowd out glibc's few); ``skip`` (the baseline) left out."""
    unwanted = {s.key for s in skip}
    known = _builtin_keys()
    pools: dict[str, list[Setting]] = {a: [] for a in space.allocators()}
    chosen: list[Setting] = []
    for s in grid(space):
        if s.key in unwanted:
            continue
        (chosen if s.key in known else pools[s.allocator]).append(s)
    chosen = chosen[:n]
    for pool in pools.values():
        rng.shuffle(pool)
    while len(chosen) < n and any(pools.values()):
        for pool in pools.values():
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    return chosen
