"""jemalloc through ``mallctl`` on the copy that is already mapped.

Names and types follow jemalloc's manual (5.x). Every read refreshes ``epoch`` first,
because jemalloc caches its statistics until told to.
"""

from __future__ import annotations

import ctypes
import errno
import os
import string
import subprocess
import sys
from collections.abc import Mapping
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
# What a pre-fork server needs so that each worker runs jemalloc's background thread.
FORK_FIX = (
    "your deployment needs `-c python:allocscope.gunicorn_conf` (gunicorn) or "
    "`allocscope.forksafe.install()` (any os.fork) in each worker"
)

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

    def compare_conf(
        self, malloc_conf: str | None, messages: tuple[str, ...] = ()
    ) -> tuple[ConfKey, ...]:
        """Each MALLOC_CONF key against the option jemalloc actually runs with.

        Keys are read the way jemalloc reads them (``read_conf``): those after the point
        where jemalloc stopped are reported as never read, with its own complaint; a key
        jemalloc named in ``messages`` (its stderr, see ``conf_messages``) gets that line.
        """
        parsed = read_conf(malloc_conf)
        results = []
        for key, requested in parsed.pairs:
            complaint = _complaint_about(key, requested, messages)
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
                    reason = (
                        "requested true, but the thread is not running (lost at fork): " + FORK_FIX
                    )
            in_effect = reason is None and complaint is None and _same(requested, effective)
            if complaint is not None:
                reason = complaint + (f" ({reason})" if reason else "")
            elif reason is None and not in_effect:
                reason = f"requested {requested}, in effect {_show(effective)}"
            results.append(ConfKey(key, requested, effective, in_effect, reason))
        for key, requested in parsed.unread_pairs():
            why = f"never read: jemalloc stopped at {parsed.unread!r} ({parsed.problem})"
            results.append(ConfKey(key, requested, None, False, why))
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


_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_")


@dataclass(frozen=True)
class ConfRead:
    """A conf string as jemalloc 5's ``malloc_conf_next`` reads it."""

    pairs: tuple[tuple[str, str], ...]  # every key:value it read, in order
    unread: str  # what it never read ('' when it read everything)
    problem: str | None  # its complaint, as it prints it after '<jemalloc>: '

    def unread_pairs(self) -> list[tuple[str, str]]:
        """The unread rest, split the forgiving way, so a report can name its keys."""
        out = []
        for item in self.unread.split(","):
            key, _, value = item.partition(":")
            if key.strip() or value.strip():
                out.append((key.strip(), value.strip()))
        return out


def read_conf(conf: str | None) -> ConfRead:
    """Read ``conf`` exactly as jemalloc does: a key is ``[A-Za-z0-9_]*`` up to ':', a
    value runs to ',' or the end; any other character in a key (a space after a comma,
    say) stops the whole string there ("Malformed conf string"), as does a key with no
    ':' ("Conf string ends with key"). A trailing ',' is complained about but harmless."""
    text = conf or ""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        start = i
        while i < len(text) and text[i] in _KEY_CHARS:
            i += 1
        if i == len(text):
            return ConfRead(tuple(pairs), text[start:], "Conf string ends with key")
        if text[i] != ":":
            return ConfRead(tuple(pairs), text[start:], "Malformed conf string")
        key = text[start:i]
        end = text.find(",", i + 1)
        end = len(text) if end < 0 else end
        pairs.append((key, text[i + 1 : end]))
        i = end + 1
        if end == len(text) - 1:
            return ConfRead(tuple(pairs), "", "Conf string ends with comma")
    return ConfRead(tuple(pairs), "", None)


def parse_conf(conf: str | None) -> list[tuple[str, str]]:
    """The key:value pairs jemalloc reads from ``conf`` (see ``read_conf``)."""
    return list(read_conf(conf).pairs)


JEMALLOC_SAYS = "<jemalloc>: "


def conf_messages(environ: Mapping[str, str] | None = None, timeout: float = 10) -> tuple[str, ...]:
    """jemalloc's own complaints about its configuration: the ground truth for a bad
    MALLOC_CONF. jemalloc printed them when this process started, to a stderr we cannot
    read back, so the same parse runs again in a child with the same environment
    (``LD_PRELOAD``, ``MALLOC_CONF``): ``python -S -c pass``, about 20 ms. Each distinct
    line once (jemalloc reads its conf twice and repeats some)."""
    env = dict(os.environ if environ is None else environ)
    try:
        child = subprocess.run(
            [sys.executable, "-S", "-c", "pass"],
            env=env,
            capture_output=True,
            text=True,
            errors="surrogateescape",  # as os.environ decodes MALLOC_CONF: messages match it
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return (f"(jemalloc's messages could not be collected: {e})",)
    # Not stripped: a value may end in a space ('narenas:2 '), and the line quotes it.
    lines = [ln for ln in child.stderr.splitlines() if ln.startswith(JEMALLOC_SAYS)]
    return tuple(dict.fromkeys(lines))


def _complaint_about(key: str, value: str, messages: tuple[str, ...]) -> str | None:
    """jemalloc's line about this pair ('<jemalloc>: Invalid conf pair: bogus:1')."""
    pair = f": {key}:{value}"
    return next((m for m in messages if m.endswith(pair)), None)


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
