"""The search space: allocator knobs, their values, and proof that the allocator reads them.

A space holds, per allocator, knobs with the values to try (``None``: leave it unset,
the allocator's own default). The default space covers what people tune by hand; a TOML
file narrows or extends it::

    [jemalloc]
    dirty_decay_ms = [0, 100, 1000, 10000]
    narenas = ["default", 2]

    [glibc]
    MALLOC_ARENA_MAX = [2, "default"]

    [python]                  # crossed with every allocator (Python targets)
    PYTHONMALLOC = ["default", "malloc"]

Every knob is checked against the *installed* allocator before any run
(:func:`prove`): jemalloc's through ``mallctl("opt.<knob>")`` in a child that preloads
it, glibc's through the loader's own ``--list-tunables``, tcmalloc's and mimalloc's by
the name the library reads from its environment. A knob the allocator does not read is
refused, named, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allocscope import exitcodes, libraries, userfile
from allocscope.errors import AllocscopeError

Value = bool | int | str | None  # None: not set (the allocator's default)
ALLOCATORS = ("glibc", "jemalloc", "tcmalloc", "mimalloc")
SECTIONS = (*ALLOCATORS, "python")
TRIM = "malloc_trim_every_s"  # glibc: a periodic malloc_trim(0) inside Python processes


class SpaceError(AllocscopeError, ValueError):
    """A space that cannot be searched: unknown knob, wrong value, empty (exit 3)."""

    exit_code = exitcodes.BAD_INPUT


@dataclass(frozen=True)
class Knob:
    section: str  # an allocator, or "python"
    name: str  # as the allocator spells it: dirty_decay_ms, MALLOC_ARENA_MAX, glibc.malloc.*
    kind: type  # bool, int or str: every value must be one (or None)
    values: tuple[Value, ...]

    @property
    def where(self) -> str:
        return f"[{self.section}] {self.name}"


# What people tune by hand, with values that span each knob's useful range.
_DEFAULT: dict[str, dict[str, tuple[type, tuple[Value, ...]]]] = {
    "glibc": {
        "MALLOC_ARENA_MAX": (int, (None, 1, 2, 4)),
        "glibc.malloc.trim_threshold": (int, (None, 0, 1 << 20)),
        "glibc.malloc.mmap_threshold": (int, (None, 65536, 1 << 20)),
    },
    "jemalloc": {
        "dirty_decay_ms": (int, (0, 100, 1000, 10000)),
        "muzzy_decay_ms": (int, (0, 100, 10000)),
        "narenas": (int, (None, 1, 2, 4)),
        "background_thread": (bool, (True, False)),
        "tcache": (bool, (None, False)),
        "tcache_max": (int, (None, 1024)),
        "retain": (bool, (None, False)),
        "percpu_arena": (str, (None, "percpu")),
        "metadata_thp": (str, (None, "auto")),
    },
    "tcmalloc": {
        "TCMALLOC_RELEASE_RATE": (int, (None, 0, 10)),
        "TCMALLOC_AGGRESSIVE_DECOMMIT": (bool, (None, True)),
    },
    "mimalloc": {
        "MIMALLOC_PURGE_DELAY": (int, (None, 0, 100)),  # mimalloc >= 2.1
        "MIMALLOC_RESET_DELAY": (int, (None, 0, 10)),  # its name in mimalloc 2.0
        "MIMALLOC_ARENA_EAGER_COMMIT": (int, (None, 0)),
    },
    "python": {"PYTHONMALLOC": (str, (None, "malloc"))},
}
# Kinds of knobs outside the default space that a TOML file may name (any jemalloc
# option is typed by its value; these are the others we know).
_KNOWN_TYPES: dict[str, type] = {TRIM: int}


@dataclass(frozen=True)
class Space:
    knobs: tuple[Knob, ...]
    named: tuple[str, ...] = ()  # allocators a file names, with or without knobs

    def sections(self) -> list[str]:
        return [s for s in SECTIONS if any(k.section == s for k in self.knobs)]

    def of(self, section: str) -> list[Knob]:
        return [k for k in self.knobs if k.section == section]

    def allocators(self) -> list[str]:
        """The allocators to search: those named, or every one when only [python] is."""
        named = {*self.named, *(k.section for k in self.knobs)} - {"python"}
        return [a for a in ALLOCATORS if a in named] or list(ALLOCATORS)

    def size(self) -> int:
        """How many settings the space holds (its full grid)."""
        python = 1
        for k in self.of("python"):
            python *= len(k.values)
        total = 0
        for allocator in self.allocators():
            n = 1
            for k in self.of(allocator):
                n *= len(k.values)
            total += n
        return total * python

    def to_dict(self) -> dict[str, dict[str, list[Value]]]:
        out: dict[str, dict[str, list[Value]]] = {}
        for k in self.knobs:
            out.setdefault(k.section, {})[k.name] = list(k.values)
        return out


def default_space(*, python: bool = True, trim: bool = False) -> Space:
    """The default space (``python``: with PYTHONMALLOC; ``trim``: with a periodic
    malloc_trim, which only commands and services of Python carry out)."""
    knobs = [
        Knob(section, name, kind, values)
        for section, table in _DEFAULT.items()
        for name, (kind, values) in table.items()
        if python or section != "python"
    ]
    if trim:
        knobs.insert(3, Knob("glibc", TRIM, int, (None, 5)))
    return Space(tuple(knobs))


def _value(raw: Any, kind: type | None, where: str) -> Value:
    if raw == "default":
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, bool | int | str):
        raise SpaceError(f"{where}: {raw!r} is not a value (use numbers, true/false, strings)")
    if kind is not None and type(raw) is not kind:  # true is not a number here
        raise SpaceError(f"{where}: {raw!r} is a {type(raw).__name__}, expected {kind.__name__}")
    return raw


def parse(doc: Mapping[str, Any], where: str = "space", *, base: Space | None = None) -> Space:
    """A space from a TOML document. Named knobs replace the default space's; a section
    that is not named is left out (the file narrows). ``base`` gives the known kinds."""
    base = base or default_space(trim=True)
    known = {(k.section, k.name): k.kind for k in base.knobs}
    knobs: list[Knob] = []
    named: list[str] = []
    for section, table in doc.items():
        if section not in SECTIONS:
            raise SpaceError(f"{where}: unknown section [{section}]; use {', '.join(SECTIONS)}")
        if not isinstance(table, dict):
            raise SpaceError(f"{where}: [{section}] must be a table of knob = [values]")
        named.append(section)
        for name, raw in table.items():
            at = f"{where}: [{section}] {name}"
            values = raw if isinstance(raw, list) else [raw]
            if not values:
                raise SpaceError(f"{at}: no values to try")
            kind = known.get((section, name), _KNOWN_TYPES.get(name))
            parsed = tuple(_value(v, kind, at) for v in values)
            if kind is None:  # typed by its values: all of one type
                types = {type(v) for v in parsed if v is not None}
                if len(types) > 1:
                    raise SpaceError(
                        f"{at}: values of mixed types {sorted(t.__name__ for t in types)}"
                    )
                kind = types.pop() if types else str
            if len(set(parsed)) != len(parsed):
                raise SpaceError(f"{at}: a value is given twice")
            knobs.append(Knob(section, name, kind, parsed))
    if not named:
        raise SpaceError(f"{where}: the space is empty: name an allocator or a knob with values")
    return Space(tuple(knobs), tuple(named))


def load(path: str) -> Space:
    try:
        doc = tomllib.loads(userfile.read_text(path, userfile.CONFIG_LIMIT))
    except userfile.UserFileError as e:
        raise SpaceError(str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"{path}: not valid TOML: {e}") from None
    return parse(doc, path)


# ---- proof that the installed allocator reads each knob ---------------------------------

_JE_CHILD = """
import ctypes, errno, json, sys
lib = ctypes.CDLL(sys.argv[1])
mallctl = lib.mallctl
mallctl.argtypes = (ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                    ctypes.c_void_p, ctypes.c_size_t)
out = {}
for name in sys.argv[2:]:
    buf = ctypes.create_string_buffer(64)
    size = ctypes.c_size_t(8)
    rc = mallctl(("opt." + name).encode(), buf, ctypes.byref(size), None, 0)
    out[name] = rc  # 0 or EINVAL (another size): it exists; ENOENT: it does not
print(json.dumps(out))
"""
ENOENT = 2


def _jemalloc_unknown(names: Sequence[str], path: str) -> dict[str, str]:
    """jemalloc's own answer: ``mallctl("opt.NAME")`` in a child that preloads it."""
    env = {**os.environ, "LD_PRELOAD": path}
    env.pop("MALLOC_CONF", None)
    try:
        child = subprocess.run(
            [sys.executable, "-S", "-c", _JE_CHILD, path, *names],
            env=env, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        codes = json.loads(child.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise SpaceError(f"cannot ask jemalloc ({path}) which options it has: {e}") from None
    return {
        n: f"jemalloc at {path} has no option {n!r} (mallctl opt.{n}: ENOENT)"
        for n in names
        if codes.get(n) == ENOENT
    }


def _loader() -> str | None:
    """The dynamic loader this interpreter runs under (from its own maps)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if re.search(r"/ld-linux[^/]*\.so[.\d]*$", path):
                    return path
    except OSError:
        return None
    return None


def glibc_tunables() -> set[str] | None:
    """Every tunable the loader knows (``ld.so --list-tunables``); None if it cannot say."""
    loader = _loader()
    if loader is None:
        return None
    try:
        out = subprocess.run(
            [loader, "--list-tunables"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.split(":", 1)[0].strip() for line in out.splitlines() if ":" in line}


_GLIBC_ENV = {"MALLOC_ARENA_MAX": "glibc.malloc.arena_max"}  # the tunable each env var sets


def _glibc_unknown(names: Sequence[str]) -> dict[str, str]:
    tunables = glibc_tunables()
    missing = {}
    for name in names:
        if name == TRIM:
            continue  # carried out by allocscope's hook with ctypes: malloc_trim always exists
        tunable = _GLIBC_ENV.get(name, name)
        if not tunable.startswith("glibc.malloc."):
            missing[name] = f"glibc has no malloc knob {name!r} (use glibc.malloc.* tunables)"
        elif tunables is None:
            missing[name] = "the loader cannot list its tunables (glibc < 2.33?): not proved"
        elif tunable not in tunables:
            missing[name] = f"this glibc's loader does not list the tunable {tunable!r}"
    return missing


def _strings_in(path: str, words: Iterable[bytes]) -> set[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    return {w for w in words if b"\0" + w + b"\0" in data}


def _env_unknown(allocator: str, names: Sequence[str], path: str) -> dict[str, str]:
    """tcmalloc reads ``getenv("TCMALLOC_X")``: the name is in the library. mimalloc
    builds ``MIMALLOC_`` + an option's name: the lower-case name is in its table."""
    prefix = {"tcmalloc": "TCMALLOC_", "mimalloc": "MIMALLOC_"}[allocator]
    bad = {
        n: f"{allocator} reads no {n!r} (not {prefix}*)" for n in names if not n.startswith(prefix)
    }
    words = {
        n: (n if allocator == "tcmalloc" else n[len(prefix) :].lower()).encode()
        for n in names
        if n not in bad
    }
    try:
        found = _strings_in(path, words.values())
    except OSError as e:
        raise SpaceError(f"cannot read {path}: {e.strerror}") from None
    for n, w in words.items():
        if w not in found:
            bad[n] = f"{allocator} at {path} does not read {n} (no {w.decode()!r} in the library)"
    return bad


@dataclass(frozen=True)
class Proof:
    """Which knobs the installed allocators read, and which allocators are missing."""

    space: Space  # what is left to search
    refused: dict[str, str]  # "[section] knob" -> why
    missing: dict[str, str]  # allocator -> why it cannot be searched


def prove(space: Space, *, explicit: bool, libs: Mapping[str, str | None] | None = None) -> Proof:
    """Check every knob against the installed allocator. ``explicit`` (a space file): a
    refused knob, or an allocator it names that is not installed, is an error naming it,
    before any run. The default space instead drops what this system does not read
    (mimalloc 2.0 has no purge_delay) and says so."""
    refused: dict[str, str] = {}
    missing: dict[str, str] = {}
    found = dict(libs) if libs is not None else {a: libraries.find(a) for a in libraries.SONAMES}
    for section in space.allocators():
        names = [k.name for k in space.of(section)]
        if section == "glibc":
            bad = _glibc_unknown(names) if names else {}
        else:
            path = found.get(section)
            if path is None:
                missing[section] = f"{section} is not installed"
                continue
            if not names:
                bad = {}
            elif section == "jemalloc":
                bad = _jemalloc_unknown(names, path)
            else:
                bad = _env_unknown(section, names, path)
        refused.update({f"[{section}] {n}": why for n, why in bad.items()})
    refused.update(
        {
            f"[python] {k.name}": "only PYTHONMALLOC"
            for k in space.of("python")
            if k.name != "PYTHONMALLOC"
        }
    )
    if explicit:
        problems = [f"{k}: {why}" for k, why in refused.items()]
        problems += [f"[{a}]: {why}" for a, why in missing.items() if a in space.named]
        if problems:
            raise SpaceError(
                "the space names what this system cannot run:\n  " + "\n  ".join(problems)
            )
    left = [a for a in space.allocators() if a not in missing]
    if not left:
        raise SpaceError("the space is empty on this system: " + "; ".join(missing.values()))
    kept = tuple(k for k in space.knobs if k.where not in refused and k.section not in missing)
    return Proof(Space(kept, tuple(left)), refused, missing)
