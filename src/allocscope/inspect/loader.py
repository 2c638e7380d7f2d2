"""Who serves malloc in another process, decided as the dynamic loader decides.

The loader binds ``malloc`` to the first object in its lookup order that defines it: the
executable, then LD_PRELOAD's entries in order, then /etc/ld.so.preload's, then the
libraries the program links. We read that order from the process (its environ, its
maps, its root's ld.so.preload) and name each object by its symbols (probe.identity).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Literal

from allocscope.inspect import emulation
from allocscope.inspect.procinfo import Mapping, Proc
from allocscope.probe import elf, identity
from allocscope.probe.allocator import Declared, Source, conflict_of, split_preload
from allocscope.probe.identity import AllocatorName

Origin = Literal["LD_PRELOAD", "/etc/ld.so.preload"]


@dataclass(frozen=True)
class MappedAllocator:
    name: AllocatorName
    version: str | None
    path: str
    defines_malloc: bool


@dataclass(frozen=True)
class PreloadExplained:
    entry: str  # as written
    origin: Origin
    expanded: str  # after $LIB / $PLATFORM
    loaded: bool
    path: str | None  # the mapped object, when loaded
    allocator: AllocatorName | None
    verdict: str  # one sentence: what became of the entry


@dataclass(frozen=True)
class AllocatorReport:
    name: AllocatorName
    version: str | None
    source: Source
    path: str | None
    marker: str | None  # the symbol that proves the allocator
    mapped: tuple[MappedAllocator, ...]  # every allocator object mapped, serving or not
    conflict: str | None  # two allocators mapped at once: a failure
    preload: tuple[PreloadExplained, ...]
    declared: Declared | None  # None when environ could not be read
    warnings: tuple[str, ...]
    emulated: str | None = None  # "aarch64 under qemu-user (...)": another machine's program

    @property
    def label(self) -> str:
        text = self.name if not self.version else f"{self.name} {self.version}"
        return text if self.source in ("linked", "unknown") else f"{text} ({self.source})"


@dataclass(frozen=True)
class _Object:
    path: str
    inode: int
    ident: identity.Identity | None  # None: could not be read
    error: str | None


def expand(entry: str, machine: str) -> list[str]:
    """The paths ld.so would try for an entry with $LIB / $PLATFORM (and ${...})."""
    if "$" not in entry:
        return [entry]
    platform = re.sub(r"\$(\{PLATFORM\}|PLATFORM)", machine, entry)
    libs = (f"lib/{machine}-linux-gnu", "lib64", "lib")  # Debian's $LIB, then the others
    return [re.sub(r"\$(\{LIB\}|LIB)", lib, platform) for lib in libs]


def _search_dirs(machine: str) -> list[str]:
    triplet = f"{machine}-linux-gnu"
    return [f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib", "/lib64", "/usr/lib64"]


def _objects(proc: Proc, maps: list[Mapping], emulator: str | None = None) -> list[_Object]:
    """Every executable file mapping, once, in address order.

    Read through the target's root (its mount namespace); a deleted or memfd object
    through /proc/PID/map_files (root only). Under an emulator, whose guest's code is
    mapped without execute permission, every file mapping but the emulator's own.
    """
    seen: dict[str, _Object] = {}
    for m in maps:
        wanted = "x" in m.perms if emulator is None else m.path != emulator
        if not wanted or not m.path.startswith("/") or m.path in seen:
            continue
        ident, error = None, None
        for path in (proc.in_root(m.path), proc.path(f"map_files/{m.start:x}-{m.end:x}")):
            try:
                ident, error = identity.identify(path), None
                break
            except OSError as e:
                error = error or e.strerror or str(e)
        seen[m.path] = _Object(m.path, m.inode, ident, error)
    return list(seen.values())


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _locate(
    proc: Proc, entry: str, machine: str, objects: list[_Object]
) -> tuple[str, _Object | None]:
    """(the expanded entry, the mapped object it became), matching by inode in the target."""
    candidates = expand(entry, machine)
    if "/" not in entry:
        candidates = [os.path.join(d, entry) for d in _search_dirs(machine)]
    for path in candidates:
        ino = _inode(proc.in_root(path))
        for obj in objects:
            if obj.inode == ino or obj.path == path:
                return path, obj
        if ino is not None:  # it exists but is not mapped
            return path, None
    return candidates[0] if "/" in entry else entry, None


def _why_not_loaded(proc: Proc, entry: str, expanded: str, exe_header: object) -> str:
    if "/" not in entry:
        return (
            "not found in the library search path"
            if _inode(proc.in_root(expanded)) is None
            else "the loader did not map it"
        )
    theirs = elf.header(proc.in_root(expanded))
    if isinstance(theirs, str):
        return theirs
    if isinstance(exe_header, tuple) and theirs != exe_header:
        return (
            f"wrong architecture: {theirs[0]}-bit {elf.describe_machine(theirs[1])}, "
            f"the executable is {exe_header[0]}-bit {elf.describe_machine(exe_header[1])}"
        )
    return "the loader did not map it (in secure-execution mode it ignores such paths)"


def _linked(roots: list[identity.Identity], objects: list[_Object]) -> list[_Object]:
    """Mapped objects in the loader's breadth-first DT_NEEDED order from ``roots``.

    Objects it does not reach were dlopen'ed: they are not in the global scope, so they
    cannot serve the program's malloc. Without DT_NEEDED to follow (an unreadable
    executable), every object, glibc last.
    """
    by_name: dict[str, _Object] = {}
    for o in objects:
        if o.ident is not None:
            by_name.setdefault(o.ident.soname or os.path.basename(o.path), o)
            by_name.setdefault(os.path.basename(o.path), o)
    queue = [name for root in roots for name in root.needed]
    if not queue:
        rest = [o for o in objects if o.ident is not None]
        return sorted(rest, key=lambda o: o.ident is not None and o.ident.allocator == "glibc")
    found: list[_Object] = []
    while queue:
        obj = by_name.get(queue.pop(0))
        if obj is not None and obj not in found and obj.ident is not None:
            found.append(obj)
            queue += obj.ident.needed
    return found


def _ld_so_preload(proc: Proc) -> list[str]:
    try:
        with open(proc.in_root("/etc/ld.so.preload"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    words = (w for line in text.splitlines() for w in line.partition("#")[0].split())
    return [w for w in words if w]


def who_serves(
    proc: Proc, maps: list[Mapping], env: MappingABC[str, str] | None
) -> AllocatorReport:
    emulated = emulation.detect(proc)
    machine = emulated.machine if emulated else os.uname().machine
    objects = _objects(proc, maps, emulated.emulator if emulated else None)
    warnings = [f"cannot read {o.path}: {o.error}" for o in objects if o.error]
    exe = proc.in_root(emulated.program) if emulated else proc.path("exe")
    exe_header = elf.header(exe)
    try:
        exe_ident: identity.Identity | None = identity.identify(exe)
    except OSError as e:
        exe_ident = None
        warnings.append(f"cannot read the executable: {e.strerror or e}")

    order: list[tuple[Source, str, identity.Identity]] = []
    if exe_ident is not None:
        try:
            order.append(("static", emulated.program if emulated else proc.link("exe"), exe_ident))
        except OSError:
            order.append(("static", "(executable)", exe_ident))

    preload: list[PreloadExplained] = []
    lists: list[tuple[Origin, list[str]]] = [
        ("LD_PRELOAD", split_preload(env.get("LD_PRELOAD")) if env is not None else []),
        ("/etc/ld.so.preload", _ld_so_preload(proc)),
    ]
    for origin, entries in lists:
        for entry in entries:
            expanded, obj = _locate(proc, entry, machine, objects)
            if obj is None:
                why = _why_not_loaded(proc, entry, expanded, exe_header)
                guess = identity.guess_by_name(expanded)
                preload.append(
                    PreloadExplained(
                        entry, origin, expanded, False, None, guess, f"not loaded: {why}"
                    )
                )
                continue
            kind = obj.ident.allocator if obj.ident else None
            item = PreloadExplained(entry, origin, expanded, True, obj.path, kind, "")
            preload.append(item)
            if obj.ident is not None:
                how: Source = "LD_PRELOAD" if origin == "LD_PRELOAD" else "ld.so.preload"
                order.append((how, obj.path, obj.ident))

    placed = {path for _, path, _ in order}
    roots = [i for _, _, i in order]  # the executable and the preloaded objects
    rest = [o for o in _linked(roots, objects) if o.path not in placed]
    order += [("linked", o.path, o.ident) for o in rest if o.ident is not None]

    serving = next(((s, p, i) for s, p, i in order if i.defines_malloc), None)
    mapped = tuple(
        MappedAllocator(o.ident.allocator, o.ident.version, o.path, o.ident.defines_malloc)
        for o in objects
        if o.ident is not None and o.ident.allocator is not None
    )
    conflict = conflict_of((m.name, m.path) for m in mapped if m.defines_malloc)

    name: AllocatorName = "unknown"
    source: Source = "unknown"
    path = version = marker = None
    if serving is None:
        warnings.append("no mapped object defines malloc (statically linked, or unreadable)")
    else:
        source, path, ident = serving
        name = ident.allocator or "unknown"
        version, marker = ident.version, ident.marker
        if name == "unknown":
            warnings.append(f"malloc is served by {path}, which is not an allocator we know")

    warnings += [
        f"{m.path} is mapped but does not serve malloc ({name} does)"
        for m in mapped
        if m.name != "glibc" and m.path != path and not any(p.path == m.path for p in preload)
    ]
    explained = tuple(_verdict(p, name, path) for p in preload)
    warnings += [f"LD_PRELOAD entry {p.entry!r} {p.verdict}" for p in explained if not p.loaded]
    declared = Declared.from_environ(dict(env)) if env is not None else None
    if declared is not None:
        if declared.malloc_conf is not None and name != "jemalloc":
            warnings.append(f"MALLOC_CONF is set but {name} serves malloc: it has no effect")
        if declared.malloc_arena_max is not None and name != "glibc":
            warnings.append(f"MALLOC_ARENA_MAX is set but {name} serves malloc: it has no effect")
    return AllocatorReport(
        name,
        version,
        source,
        path,
        marker,
        mapped,
        conflict,
        explained,
        declared,
        tuple(warnings),
        emulated.text if emulated else None,
    )


def _verdict(p: PreloadExplained, serving: str, serving_path: str | None) -> PreloadExplained:
    if not p.loaded:
        return p
    if p.allocator is None:
        text = "loaded: not a memory allocator"
    elif p.path == serving_path:
        text = f"loaded: {p.allocator}, serves malloc"
    else:
        text = f"loaded: {p.allocator}, mapped but does not serve malloc ({serving} does)"
    return PreloadExplained(p.entry, p.origin, p.expanded, True, p.path, p.allocator, text)
