"""Which allocator serves malloc in another process: the proof for commands and services.

The answer comes from :mod:`allocscope.inspect` (the symbol-based identity: which mapped
object defines malloc first in lookup order) when that package is present. Without it,
the fallback reads /proc/PID/maps and names the known allocator library that is mapped
(a preloaded allocator is mapped, and then it serves malloc); ``method`` says which one
was used, so a results file never hides a weaker proof.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from allocscope.probe import procfs
from allocscope.probe.allocator import allocator_of
from allocscope.probe.errors import ProbeError


@dataclass(frozen=True)
class ProcessProof:
    pid: int
    exe: str | None
    allocator: str | None  # None: could not be told (the process was gone, no permission)
    version: str | None
    path: str | None  # the object that serves malloc
    method: str  # "inspect" (symbols) or "maps" (mapped library names)
    detail: str = ""

    def matches(self, expected: str) -> bool:
        return self.allocator == expected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exe_of(pid: int, proc_root: str = procfs.DEFAULT_ROOT) -> str | None:
    try:
        return os.readlink(procfs.proc_path("exe", proc_root, pid))
    except OSError:
        return None


def prove(pid: int, proc_root: str = procfs.DEFAULT_ROOT) -> ProcessProof:
    """The allocator serving malloc in ``pid``, read from outside."""
    exe = exe_of(pid, proc_root)
    try:
        from allocscope import inspect as inspect_pkg  # the inspect branch's API
    except ImportError:
        return _by_maps(pid, exe, proc_root)
    try:
        report = inspect_pkg.inspect_process(pid, proc_root=proc_root)  # type: ignore[attr-defined]
    except Exception as e:  # gone, no permission: said, never guessed
        return ProcessProof(pid, exe, None, None, None, "inspect", f"cannot inspect: {e}")
    return _from_report(pid, exe, report)


def _from_report(pid: int, exe: str | None, report: Any) -> ProcessProof:
    alloc = getattr(report, "allocator", None)
    name = getattr(alloc, "name", alloc)
    version = getattr(report, "version", None) or getattr(alloc, "version", None)
    path = getattr(report, "path", None) or getattr(alloc, "path", None)
    findings = getattr(report, "findings", None) or getattr(report, "warnings", None) or ()
    return ProcessProof(
        pid,
        exe,
        str(name) if name else None,
        str(version) if version else None,
        str(path) if path else None,
        "inspect",
        "; ".join(str(f) for f in findings),
    )


def _by_maps(pid: int, exe: str | None, proc_root: str) -> ProcessProof:
    try:
        mapped = procfs.mapped_files(proc_root, pid)
    except ProbeError as e:
        return ProcessProof(pid, exe, None, None, None, "maps", str(e))
    found = [(allocator_of(p), p) for p in mapped]
    others = [(n, p) for n, p in found if n not in (None, "glibc")]
    if others:
        name, path = others[0]
        detail = "" if len(others) == 1 else f"also mapped: {', '.join(p for _, p in others[1:])}"
        return ProcessProof(pid, exe, name, None, path, "maps", detail)
    libc = next((p for n, p in found if n == "glibc"), None)
    if libc is None:
        return ProcessProof(pid, exe, None, None, None, "maps", "no libc mapped (static?)")
    return ProcessProof(pid, exe, "glibc", None, libc, "maps")
