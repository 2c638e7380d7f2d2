"""Which allocator really serves malloc in this process, and how it got there.

The answer comes from the process itself, not from ``LD_PRELOAD``: we ask the dynamic
linker where ``malloc`` resolves (dlsym + dladdr), name that object by the symbols it
defines (``probe.identity``: never by its file name), list every allocator among the
mappings the same way, and confirm the winner by resolving its own symbol in the process.
Two allocators mapped at once is a failure (memory allocated by one may be freed by the
other). Whatever the environment declared is reported beside it, with a warning for every
declaration that is not in effect.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from allocscope.probe import elf, identity, native, procfs
from allocscope.probe.errors import ProbeError
from allocscope.probe.identity import AllocatorName

# static: linked into the executable itself (Ruby --with-jemalloc, Rust, Go).
Source = Literal["LD_PRELOAD", "ld.so.preload", "static", "linked", "unknown"]


@dataclass(frozen=True)
class Declared:
    """What the environment asked for (it may or may not be in effect)."""

    ld_preload: str | None
    malloc_conf: str | None
    malloc_arena_max: str | None
    pythonmalloc: str | None
    glibc_tunables: str | None

    def set_variables(self) -> list[tuple[str, str]]:
        """(variable, value) for each variable the environment set, in a fixed order."""
        pairs = (
            ("LD_PRELOAD", self.ld_preload),
            ("MALLOC_CONF", self.malloc_conf),
            ("MALLOC_ARENA_MAX", self.malloc_arena_max),
            ("GLIBC_TUNABLES", self.glibc_tunables),
            ("PYTHONMALLOC", self.pythonmalloc),
        )
        return [(k, v) for k, v in pairs if v is not None]

    @classmethod
    def from_environ(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Declared:
        env = os.environ if environ is None else environ
        return cls(
            ld_preload=env.get("LD_PRELOAD"),
            malloc_conf=env.get("MALLOC_CONF"),
            malloc_arena_max=env.get("MALLOC_ARENA_MAX"),
            pythonmalloc=env.get("PYTHONMALLOC"),
            glibc_tunables=env.get("GLIBC_TUNABLES"),
        )


@dataclass(frozen=True)
class PreloadEntry:
    """One entry of LD_PRELOAD and what became of it."""

    entry: str
    loaded: bool
    path: str | None  # the mapped file, when loaded
    allocator: str | None  # which known allocator it is, by name
    problem: str | None  # why it is not loaded, when it is not


@dataclass(frozen=True)
class AllocatorInfo:
    name: AllocatorName
    version: str | None
    path: str | None  # the shared object that serves malloc
    source: Source
    confirmed_by: str | None  # the allocator's own symbol we resolved in the process
    mapped_allocators: tuple[str, ...]  # every allocator library mapped, serving or not
    preload: tuple[PreloadEntry, ...]
    declared: Declared
    python_allocator: str  # what CPython uses for small objects
    warnings: tuple[str, ...]
    conflict: str | None = None  # two allocators mapped at once: a failure, not a warning

    @property
    def label(self) -> str:
        """'jemalloc 5.3.0 (via LD_PRELOAD)' or 'glibc 2.36', as the demo printed it."""
        text = self.name if not self.version else f"{self.name} {self.version}"
        return f"{text} (via LD_PRELOAD)" if self.source == "LD_PRELOAD" else text


def allocator_of(path: str) -> AllocatorName | None:
    """The allocator an object is, by the symbols it defines (by name only if unreadable)."""
    try:
        return identity.identify(path).allocator
    except OSError:
        return identity.guess_by_name(path)


def conflict_of(allocators: Iterable[tuple[str, str]]) -> str | None:
    """The failure sentence when (name, path) pairs hold more than one non-glibc allocator."""
    by_name: dict[str, str] = {}
    for name, path in allocators:
        if name != "glibc":
            by_name.setdefault(name, path)
    if len(by_name) < 2:
        return None
    listed = ", ".join(f"{name} ({path})" for name, path in sorted(by_name.items()))
    return (
        f"{len(by_name)} allocators mapped at once: {listed}; memory allocated by one "
        "can be freed by the other (a crash)"
    )


def split_preload(value: str | None) -> list[str]:
    """LD_PRELOAD entries: ld.so separates them by spaces and colons, nothing else (a tab
    is part of a file name to it; ld.so(8), glibc's rtld.c splits on " :")."""
    return [e for e in re.split(r"[ :]+", value or "") if e]


def _matches(entry: str, mapped: str) -> bool:
    if "/" in entry:
        try:
            return os.path.realpath(entry) == os.path.realpath(mapped)
        except ValueError:  # a NUL byte: no file has that name
            return False
    return os.path.basename(mapped) == entry  # a bare name is found by the search path


def examine_preload(value: str | None, mapped: list[str]) -> tuple[PreloadEntry, ...]:
    entries = []
    for entry in split_preload(value):
        hit = next((m for m in mapped if _matches(entry, m)), None)
        problem = None
        if hit is None:
            why = elf.mismatch(entry) if "/" in entry else "not found in the library search path"
            problem = why or "the loader did not map it"
        name = allocator_of(hit or entry)
        entries.append(PreloadEntry(entry, hit is not None, hit, name, problem))
    return tuple(entries)


def python_allocator(pythonmalloc: str | None) -> str:
    """What CPython uses for objects, measured (``probe.pymem``), and whether a
    ``PYTHONMALLOC`` declaration is what it runs (``python -E`` ignores it, ``-X dev``
    adds debug hooks)."""
    from allocscope.probe import pymem

    measured = pymem.measure()
    wanted = pymem.declared(pythonmalloc)
    if wanted is None or wanted == (measured.name, measured.debug_hooks):
        return measured.detail
    return f"{measured.detail}; PYTHONMALLOC={pythonmalloc} is set but not in effect"


def _version(name: str, lib: ctypes.CDLL) -> str | None:
    if name == "glibc":
        fn = lib.gnu_get_libc_version
        fn.argtypes, fn.restype = (), ctypes.c_char_p
        return (fn() or b"").decode() or None
    if name == "mimalloc":
        fn = lib.mi_version
        fn.argtypes, fn.restype = (), ctypes.c_int
        v = int(fn())  # 209 means 2.0.9
        return f"{v // 100}.{v % 100 // 10}.{v % 10}"
    if name == "tcmalloc":
        fn = lib.tc_version
        c_int_p = ctypes.POINTER(ctypes.c_int)
        fn.argtypes = (c_int_p, c_int_p, ctypes.POINTER(ctypes.c_char_p))
        fn.restype = ctypes.c_char_p
        major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_char_p()
        fn(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
        return f"{major.value}.{minor.value}{(patch.value or b'').decode()}"
    if name == "jemalloc":
        from allocscope.probe.jemalloc import Jemalloc

        return Jemalloc(lib).version().split("-")[0]  # '5.3.0-0-g54eaed1d' -> '5.3.0'
    return None


def detect(
    proc_root: str = procfs.DEFAULT_ROOT, environ: dict[str, str] | None = None
) -> AllocatorInfo:
    """Detect the allocator serving malloc in *this* process."""
    declared = Declared.from_environ(environ)
    warnings: list[str] = []
    try:
        mapped = procfs.mapped_files(proc_root)
    except ProbeError as e:
        mapped = []
        warnings.append(f"{e}; allocator libraries mapped but not serving cannot be listed")
    named = [(m, _identify(m)) for m in mapped]
    allocator_libs = tuple(m for m, i in named if i.allocator not in (None, "glibc"))
    conflict = conflict_of(
        (i.allocator, m) for m, i in named if i.allocator is not None and i.defines_malloc
    )
    preload = examine_preload(declared.ld_preload, mapped)

    serving = native.definer("malloc")
    ident = _identify(serving) if serving else identity.NOT_ELF
    name: AllocatorName = ident.allocator or "unknown"
    if serving is None:
        warnings.append("dladdr could not place malloc in any shared object")
    elif name == "unknown":
        warnings.append(f"malloc is served by {serving}, which is not an allocator we know")

    version = confirmed_by = None
    lib = native.already_loaded(serving) if serving else None
    if lib is not None and ident.marker is not None:
        if native.symbol_address(lib, ident.marker) is not None:
            confirmed_by = ident.marker
            version = _version(name, lib)
        else:
            warnings.append(f"{serving} defines {ident.marker} but the process cannot resolve it")
    version = version or ident.version

    source: Source = "unknown"
    if serving:
        preloaded = any(p.loaded and p.path and _matches(p.path, serving) for p in preload)
        static = _same_file(serving, procfs.proc_path("exe", proc_root))
        source = "LD_PRELOAD" if preloaded else "static" if static else "linked"

    warnings += _preload_warnings(preload, name)
    warnings += [
        f"{path} is mapped but does not serve malloc ({name} does)"
        for path in allocator_libs
        if serving is None or os.path.realpath(path) != os.path.realpath(serving)
    ]
    if declared.malloc_conf is not None and name != "jemalloc":
        warnings.append(f"MALLOC_CONF is set but {name} serves malloc: it has no effect")
    if declared.malloc_arena_max is not None and name != "glibc":
        warnings.append(f"MALLOC_ARENA_MAX is set but {name} serves malloc: it has no effect")

    return AllocatorInfo(
        name=name,
        version=version,
        path=serving,
        source=source,
        confirmed_by=confirmed_by,
        mapped_allocators=allocator_libs,
        preload=preload,
        declared=declared,
        python_allocator=python_allocator(declared.pythonmalloc),
        warnings=tuple(warnings),
        conflict=conflict,
    )


def _identify(path: str) -> identity.Identity:
    try:
        return identity.identify(path)
    except OSError:
        return identity.NOT_ELF


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _preload_warnings(preload: tuple[PreloadEntry, ...], serving: str) -> list[str]:
    warnings = [
        f"LD_PRELOAD entry {p.entry!r} is not loaded: {p.problem}" for p in preload if not p.loaded
    ]
    warnings += [
        f"LD_PRELOAD entry {p.entry!r} is loaded but is not a memory allocator"
        for p in preload
        if p.loaded and p.allocator is None
    ]
    named = [p.allocator for p in preload if p.allocator and p.allocator != "glibc"]
    if len(named) > 1:
        warnings.append(
            f"LD_PRELOAD names several allocators ({', '.join(named)}); {serving} serves malloc"
        )
    return warnings
