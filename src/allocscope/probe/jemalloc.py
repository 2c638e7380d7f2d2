"""jemalloc through ``mallctl`` on the copy that is already mapped.

Names and types follow jemalloc's manual (5.x). Every read refreshes ``epoch`` first,
because jemalloc caches its statistics until told to.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass
from typing import Literal

from allocscope.probe import native

ValueType = Literal["bool", "unsigned", "size_t", "ssize_t", "uint64", "str"]

_CTYPES: dict[ValueType, type[ctypes._SimpleCData]] = {  # type: ignore[type-arg]
    "bool": ctypes.c_bool,
    "unsigned": ctypes.c_uint,
    "size_t": ctypes.c_size_t,
    "ssize_t": ctypes.c_ssize_t,
    "uint64": ctypes.c_uint64,
    "str": ctypes.c_char_p,
}

STATS: tuple[str, ...] = ("allocated", "active", "resident", "mapped", "retained", "metadata")

# Options whose effective value we report, with their mallctl types.
OPTIONS: dict[str, ValueType] = {
    "abort_conf": "bool",
    "background_thread": "bool",
    "max_background_threads": "size_t",
    "narenas": "unsigned",
    "percpu_arena": "str",
    "dirty_decay_ms": "ssize_t",
    "muzzy_decay_ms": "ssize_t",
    "retain": "bool",
    "thp": "str",
    "metadata_thp": "str",
    "oversize_threshold": "size_t",
    "tcache": "bool",
    "tcache_max": "size_t",
    "dss": "str",
    "junk": "str",
    "zero": "bool",
    "lg_extent_max_active_fit": "size_t",
    "stats_print": "bool",
    "prof": "bool",
}

ALL_ARENAS = 4096  # MALLCTL_ARENAS_ALL

OptionValue = bool | int | str | None


@dataclass(frozen=True)
class JemallocStats:
    version: str
    allocated: int
    active: int
    resident: int
    mapped: int
    retained: int
    metadata: int
    narenas: int
    background_thread: bool  # the live state, which fork() can turn off


@dataclass(frozen=True)
class ConfKey:
    """One MALLOC_CONF key compared with the effective option."""

    key: str
    requested: str
    effective: OptionValue
    in_effect: bool
    reason: str | None


class Jemalloc:
    """A ``mallctl`` binding; ``lib`` must be the jemalloc already serving malloc."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._mallctl = lib.mallctl
        self._mallctl.argtypes = (
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
            ctypes.c_size_t,
        )
        self._mallctl.restype = ctypes.c_int

    def read(self, name: str, kind: ValueType) -> OptionValue:
        value = _CTYPES[kind]()
        size = ctypes.c_size_t(ctypes.sizeof(value))
        rc = self._mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0)
        if rc:
            raise native.os_error(rc, f"mallctl({name!r})")
        raw = value.value
        return raw.decode() if isinstance(raw, bytes) else raw

    def write(self, name: str, kind: ValueType | None = None, value: OptionValue = None) -> None:
        """Write ``value`` (or nothing, for commands like ``arena.N.purge``)."""
        if kind is None:
            rc = self._mallctl(name.encode(), None, None, None, 0)
        else:
            new = _CTYPES[kind](value)
            rc = self._mallctl(name.encode(), None, None, ctypes.byref(new), ctypes.sizeof(new))
        if rc:
            raise native.os_error(rc, f"mallctl({name!r})")

    def refresh(self) -> None:
        self.write("epoch", "uint64", 1)

    def version(self) -> str:
        return str(self.read("version", "str"))

    def stats(self) -> JemallocStats:
        self.refresh()
        values = {k: int(self.read(f"stats.{k}", "size_t") or 0) for k in STATS}
        return JemallocStats(
            version=self.version(),
            narenas=int(self.read("arenas.narenas", "unsigned") or 0),
            background_thread=bool(self.read("background_thread", "bool")),
            **values,
        )

    def options(self) -> dict[str, OptionValue]:
        """Effective ``opt.*`` values; an option this build lacks is left out."""
        found: dict[str, OptionValue] = {}
        for key, kind in OPTIONS.items():
            try:
                found[key] = self.read(f"opt.{key}", kind)
            except OSError:
                continue
        return found

    def compare_conf(self, malloc_conf: str | None) -> tuple[ConfKey, ...]:
        """Each MALLOC_CONF key against the option jemalloc actually runs with."""
        results = []
        for key, requested in parse_conf(malloc_conf):
            kind = OPTIONS.get(key)
            effective: OptionValue = None
            reason = None
            try:
                effective = self.read(f"opt.{key}", kind or "str") if kind else None
            except OSError as e:
                reason = _missing(key, e)
            if kind is None and reason is None:
                effective, reason = self._read_any(key)
            if key == "background_thread" and effective and reason is None:
                # opt.* keeps saying true after fork() stopped the thread: judge the state now.
                effective = self.read("background_thread", "bool")
                if not effective:
                    reason = "requested true, but the thread is not running (lost at fork)"
            in_effect = reason is None and _same(requested, effective)
            if reason is None and not in_effect:
                reason = f"requested {requested}, in effect {_show(effective)}"
            results.append(ConfKey(key, requested, effective, in_effect, reason))
        return tuple(results)

    def _read_any(self, key: str) -> tuple[OptionValue, str | None]:
        """An option outside our table: try each type; ENOENT means jemalloc lacks it."""
        kinds: tuple[ValueType, ...] = ("bool", "size_t", "str")
        for kind in kinds:
            try:
                return self.read(f"opt.{key}", kind), None
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: wrong size, try the next type
                    return None, _missing(key, e)
        return None, f"option {key!r} has a type allocscope cannot read"

    def purge(self) -> None:
        """Return dirty and muzzy pages of every arena to the OS now."""
        self.write(f"arena.{ALL_ARENAS}.purge")

    def set_background_thread(self, enabled: bool) -> None:
        self.write("background_thread", "bool", enabled)


def parse_conf(conf: str | None) -> list[tuple[str, str]]:
    """'a:1,b:true' -> [('a', '1'), ('b', 'true')]; a pair without ':' keeps '' as value."""
    pairs = []
    for item in (conf or "").split(","):
        if item.strip():
            key, _, value = item.partition(":")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _missing(key: str, error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return f"jemalloc has no option {key!r} (misspelt, or not built in)"
    return f"jemalloc refused to report option {key!r}: {error.strerror}"


def _same(requested: str, effective: OptionValue) -> bool:
    if isinstance(effective, bool):
        return requested.lower() == str(effective).lower()
    if isinstance(effective, int):
        try:
            return int(requested) == effective
        except ValueError:
            return False
    return requested == effective


def _show(value: OptionValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def bind(path: str) -> Jemalloc | None:
    """The binding for the jemalloc mapped at ``path``; None if it is not mapped."""
    lib = native.already_loaded(path)
    return Jemalloc(lib) if lib is not None else None
