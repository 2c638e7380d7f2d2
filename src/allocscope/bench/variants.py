"""Allocator variants: which library a child preloads and which variables it gets.

A variant names the allocator it expects to serve malloc; the child proves it (see
:mod:`allocscope.bench.kinds.workload.worker`). A variant whose library is not installed is
*unavailable*: it is reported and skipped, never silently run on glibc.

User variants come from the command line::

    --variant name=je-narenas1,lib=jemalloc,env=MALLOC_CONF=narenas:1,tcache:false

(an item that does not start with ``key=`` belongs to the one before it, so MALLOC_CONF
keeps its commas) or from a TOML file::

    [[variant]]
    name = "je-narenas1"
    lib = "jemalloc"            # an allocator name (discovered) or a path
    env = { MALLOC_CONF = "narenas:1" }
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allocscope import libraries, userfile
from allocscope.bench.evidence import Inside, TrimEvent
from allocscope.errors import AllocscopeError
from allocscope.expectations import ALLOCATORS
from allocscope.probe import elf
from allocscope.probe.allocator import allocator_of

DEMO_CONF = "background_thread:true,metadata_thp:auto,dirty_decay_ms:500,muzzy_decay_ms:500"
TUNED_CONF = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:100,retain:false,narenas:2"
SHORT_DECAY_CONF = "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
LONG_DECAY_CONF = "background_thread:true,dirty_decay_ms:60000,muzzy_decay_ms:60000"
TRIM_EVERY = 5.0  # seconds, glibc-trim's default period
PYTHONMALLOC_SUFFIX = "+pythonmalloc"

# Variables a variant may not set through env= (they have their own keys).
_RESERVED = ("LD_PRELOAD",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_ITEM = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*=")


class VariantError(AllocscopeError):
    """A variant that cannot be understood or whose library is wrong (exit 3)."""


@dataclass(frozen=True)
class Variant:
    name: str
    allocator: str  # the allocator that must serve malloc in the child
    library: str | None = None  # preloaded through LD_PRELOAD; None for glibc
    env: tuple[tuple[str, str], ...] = ()
    description: str = ""
    unavailable: str | None = None  # why this variant cannot run here
    trim_every: float | None = None  # glibc-trim: malloc_trim(0) every N s (Python targets)

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def environ(self) -> dict[str, str]:
        """The variables this variant adds to the child's allow-listed environment."""
        env = dict(self.env)
        if self.library:
            env["LD_PRELOAD"] = self.library
        return env

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "allocator": self.allocator,
            "library": self.library,
            "env": dict(self.env),
            "description": self.description,
            "available": self.available,
            "unavailable": self.unavailable,
            "trim_every": self.trim_every,
        }


@dataclass(frozen=True)
class _Builtin:
    allocator: str
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    default: bool = True  # part of the default set
    trim_every: float | None = None


BUILTINS: dict[str, _Builtin] = {
    "glibc": _Builtin("glibc", description="glibc malloc, as the system ships it"),
    "glibc-arena2": _Builtin("glibc", {"MALLOC_ARENA_MAX": "2"}, "glibc malloc capped at 2 arenas"),
    "jemalloc-demo": _Builtin(
        "jemalloc", {"MALLOC_CONF": DEMO_CONF}, "jemalloc with the demo image's MALLOC_CONF"
    ),
    "jemalloc-tuned": _Builtin(
        "jemalloc", {"MALLOC_CONF": TUNED_CONF}, "jemalloc tuned as in the demo's benchmark"
    ),
    "tcmalloc": _Builtin("tcmalloc", description="gperftools tcmalloc (minimal)"),
    "mimalloc": _Builtin("mimalloc", description="Microsoft mimalloc"),
    "jemalloc": _Builtin(
        "jemalloc", description="jemalloc with its defaults (10 s decay)", default=False
    ),
    # Mitigations people apply today; for commands and services (not in the default set).
    "glibc-trim": _Builtin(
        "glibc",
        description=f"glibc, malloc_trim(0) every {TRIM_EVERY:g} s inside each Python process",
        default=False,
        trim_every=TRIM_EVERY,
    ),
    "jemalloc-pymalloc-off": _Builtin(
        "jemalloc",
        {"MALLOC_CONF": TUNED_CONF, "PYTHONMALLOC": "malloc"},
        "jemalloc-tuned with PYTHONMALLOC=malloc: every Python object goes to jemalloc",
        default=False,
    ),
    "jemalloc-decay-short": _Builtin(
        "jemalloc",
        {"MALLOC_CONF": SHORT_DECAY_CONF},
        "jemalloc, 0 s decay: purge at once",
        default=False,
    ),
    "jemalloc-decay-long": _Builtin(
        "jemalloc",
        {"MALLOC_CONF": LONG_DECAY_CONF},
        "jemalloc, 60 s decay: keep pages longer",
        default=False,
    ),
}
DEFAULT_NAMES = tuple(name for name, b in BUILTINS.items() if b.default)


class Libraries:
    """Allocator library paths: discovered, unless given (``--lib jemalloc=PATH``)."""

    def __init__(
        self, given: Mapping[str, str] | None = None, dirs: Sequence[str] | None = None
    ) -> None:
        self._given = dict(given or {})
        self._dirs = list(dirs) if dirs else None  # None: the usual places
        for name, path in self._given.items():
            if name not in libraries.SONAMES:
                raise VariantError(
                    f"--lib {name}=...: unknown allocator; choose from "
                    f"{', '.join(libraries.SONAMES)}"
                )
            check_library(path)

    def find(self, allocator: str) -> str | None:
        return self._given.get(allocator) or libraries.find(allocator, self._dirs)

    def missing(self, allocator: str) -> str:
        names = " or ".join(libraries.SONAMES.get(allocator, (allocator,)))
        dirs = self._dirs if self._dirs is not None else libraries.search_dirs()
        return f"{names} not found in {', '.join(dirs)}"


def check_library(path: str) -> str:
    """``path`` if the loader could preload it into this interpreter; else VariantError."""
    why = elf.mismatch(path)
    if why is not None:
        raise VariantError(f"library {path!r} cannot be preloaded: {why}")
    return path


def _make(
    name: str,
    allocator: str | None,
    lib: str | None,
    env: Mapping[str, str],
    description: str,
    libs: Libraries,
    trim_every: float | str | None = None,
) -> Variant:
    if not _NAME.match(name):
        raise VariantError(f"variant name {name!r}: use letters, digits and . _ + -")
    for key in env:
        if not _ENV_KEY.match(key):
            raise VariantError(f"variant {name}: {key!r} is not an environment variable name")
        if key in _RESERVED:
            raise VariantError(f"variant {name}: set the library with lib=, not env={key}")
    library = unavailable = None
    if lib:
        if "/" in lib:
            library = check_library(lib)
        elif lib in libraries.SONAMES:
            library = libs.find(lib)
            if library is None:
                unavailable = libs.missing(lib)
        else:
            raise VariantError(
                f"variant {name}: lib={lib!r} is neither a path nor one of "
                f"{', '.join(libraries.SONAMES)}"
            )
    expected = allocator or (allocator_of(library) if library else None)
    if expected is None and lib in libraries.SONAMES:
        expected = lib
    if expected is None and not lib:
        expected = "glibc"
    if expected not in ALLOCATORS:
        raise VariantError(
            f"variant {name}: cannot tell which allocator {lib!r} is; "
            f"add allocator= (one of {', '.join(ALLOCATORS)})"
        )
    return Variant(
        name=name,
        allocator=expected,
        library=library,
        env=tuple(sorted(env.items())),
        description=description,
        unavailable=unavailable,
        trim_every=_trim(name, trim_every),
    )


def _trim(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise VariantError(f"variant {name}: trim= must be seconds, not {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise VariantError(f"variant {name}: trim= must be greater than 0, not {value!r}")
    return seconds


def builtin(name: str, libs: Libraries | None = None) -> Variant:
    spec = BUILTINS.get(name)
    if spec is None:
        raise VariantError(f"unknown variant {name!r}; built in: {', '.join(BUILTINS)}")
    lib = spec.allocator if spec.allocator != "glibc" else None
    return _make(
        name, spec.allocator, lib, spec.env, spec.description, libs or Libraries(), spec.trim_every
    )


_SPEC_KEYS = ("name", "lib", "allocator", "env", "description", "trim")


def parse_spec(text: str, libs: Libraries | None = None) -> Variant:
    """A built-in name, or ``name=N,lib=L,allocator=A,env=K=V,env=K=V``."""
    if "=" not in text:
        return builtin(text.strip(), libs)
    items: list[str] = []
    for part in text.split(","):
        if items and not _KEY_ITEM.match(part):
            items[-1] += "," + part  # a comma inside a value (MALLOC_CONF's pairs)
        else:
            items.append(part)
    fields: dict[str, str] = {}
    env: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in _SPEC_KEYS:
            raise VariantError(
                f"variant {text!r}: unknown key {key!r}; use {', '.join(_SPEC_KEYS)}"
            )
        if key == "env":
            var, sep, val = value.partition("=")
            if not sep:
                raise VariantError(f"variant {text!r}: env= needs KEY=VALUE, got {value!r}")
            env[var.strip()] = val
        elif key in fields:
            raise VariantError(f"variant {text!r}: {key}= given twice")
        else:
            fields[key] = value.strip()
    if not fields.get("name"):
        raise VariantError(f"variant {text!r}: name= is required")
    return _make(
        fields["name"],
        fields.get("allocator") or None,
        fields.get("lib") or None,
        env,
        fields.get("description", ""),
        libs or Libraries(),
        fields.get("trim"),
    )


def load_toml(path: str, libs: Libraries | None = None) -> list[Variant]:
    """Variants from a TOML file of ``[[variant]]`` tables."""
    try:
        doc = tomllib.loads(userfile.read_text(path, userfile.CONFIG_LIMIT))
    except userfile.UserFileError as e:
        raise VariantError(str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise VariantError(f"{path}: not valid TOML: {e}") from None
    tables = doc.get("variant")
    if not isinstance(tables, list) or not tables:
        raise VariantError(f"{path}: expected one or more [[variant]] tables")
    variants = []
    for i, table in enumerate(tables, 1):
        where = f"{path}: variant {i}"
        if not isinstance(table, dict):
            raise VariantError(f"{where}: expected a table")
        unknown = set(table) - set(_SPEC_KEYS)
        if unknown:
            raise VariantError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        env = table.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise VariantError(f"{where}: env must be a table of strings")
        strings = {k: table.get(k) for k in ("name", "lib", "allocator", "description")}
        if any(v is not None and not isinstance(v, str) for v in strings.values()):
            raise VariantError(f"{where}: name, lib, allocator, description must be strings")
        if not strings["name"]:
            raise VariantError(f"{where}: name is required")
        variants.append(
            _make(
                str(strings["name"]),
                strings["allocator"],
                strings["lib"],
                env,
                strings["description"] or "",
                libs or Libraries(),
                table.get("trim"),
            )
        )
    return variants


def with_pythonmalloc(variants: Iterable[Variant]) -> list[Variant]:
    """Each variant, then its twin with PYTHONMALLOC=malloc (no pymalloc in front)."""
    out = []
    for v in variants:
        out.append(v)
        if "PYTHONMALLOC" not in dict(v.env):
            env = tuple(sorted({**dict(v.env), "PYTHONMALLOC": "malloc"}.items()))
            out.append(
                Variant(
                    name=v.name + PYTHONMALLOC_SUFFIX,
                    allocator=v.allocator,
                    library=v.library,
                    env=env,
                    description=f"{v.description} (PYTHONMALLOC=malloc)".strip(),
                    unavailable=v.unavailable,
                    trim_every=v.trim_every,
                )
            )
    return out


def select(
    specs: Sequence[str] = (),
    files: Sequence[str] = (),
    *,
    pythonmalloc: bool = False,
    libs: Mapping[str, str] | None = None,
    lib_dirs: Sequence[str] | None = None,
) -> list[Variant]:
    """The variants asked for (the default set when none are), unavailable ones included."""
    found = Libraries(libs, lib_dirs)
    variants = [parse_spec(s, found) for s in specs]
    for path in files:
        variants += load_toml(path, found)
    if not specs and not files:
        variants = [builtin(name, found) for name in DEFAULT_NAMES]
    seen: set[str] = set()
    for v in variants:
        if v.name in seen:
            raise VariantError(f"variant {v.name!r} is given twice")
        seen.add(v.name)
    return with_pythonmalloc(variants) if pythonmalloc else variants


def parse_lib_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["jemalloc=/opt/lib/libjemalloc.so.2"]`` -> ``{"jemalloc": "/opt/..."}``."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise VariantError(f"--lib {item!r}: expected NAME=PATH")
        out[name.strip()] = os.path.expanduser(path.strip())
    return out


def setting_problems(
    variant: Variant, inside: Sequence[Inside], trims: Sequence[TrimEvent]
) -> list[str]:
    """Why the variant's own settings did not take effect in a command or service.

    ``inside`` is what each Python process saw from inside (one per process that loaded
    the injected hook); ``trims`` are the malloc_trim calls the hook ran. Settings that only
    Python can carry out (malloc_trim from the hook, PYTHONMALLOC) fail when no Python
    process ran them.
    """
    problems = []
    env = dict(variant.env)
    no_hook = "no Python process loaded allocscope's hook"
    if variant.trim_every:
        if not inside:
            problems.append(f"{variant.name}: malloc_trim runs inside Python only; {no_hook}")
        elif not trims:
            problems.append(
                f"{variant.name}: no malloc_trim ran "
                f"(did the run end within {variant.trim_every:g} s?)"
            )
    if env.get("PYTHONMALLOC") == "malloc":
        if not inside:
            problems.append(f"{variant.name}: PYTHONMALLOC needs a Python target; {no_hook}")
        problems += [
            f"{variant.name}: process {i.pid} still allocates through pymalloc "
            f"({i.pymalloc_blocks} blocks)"
            for i in inside
            if i.pymalloc_blocks
        ]
    for i in inside:
        problems += [
            f"process {i.pid}: MALLOC_CONF {key.key} not in effect: {key.reason}"
            for key in i.malloc_conf or ()
            if not key.in_effect
        ]
    return problems
