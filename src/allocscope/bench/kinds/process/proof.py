"""Which allocator serves malloc in another process: the proof for commands and services.

The answer comes from :func:`allocscope.inspect.inspect_process`: which mapped object
defines malloc first in the loader's lookup order, named by the symbols it defines (not
by file names). Any language, no ptrace. The answer is a
:class:`~allocscope.bench.evidence.ProcessProof`, the record a run's evidence keeps.
"""

from __future__ import annotations

import os

from allocscope.bench.evidence import ProcessProof
from allocscope.inspect import InspectError, inspect_process
from allocscope.probe import procfs


def exe_of(pid: int, proc_root: str = procfs.DEFAULT_ROOT) -> str | None:
    try:
        return os.readlink(procfs.proc_path("exe", proc_root, pid))
    except OSError:
        return None


def prove(pid: int, proc_root: str = procfs.DEFAULT_ROOT) -> ProcessProof:
    """The allocator serving malloc in ``pid``, read from outside by its symbols."""
    exe = exe_of(pid, proc_root)
    try:
        report = inspect_process(pid, proc_root=proc_root)
    except InspectError as e:  # gone, a zombie, no permission: said, never guessed
        return ProcessProof(pid, exe, None, None, None, f"cannot inspect: {e}")
    alloc = report.allocator
    if alloc is None:
        why = "; ".join(f"{u.part}: {u.reason}" for u in report.unknowns) or "unknown"
        return ProcessProof(pid, exe, None, None, None, f"allocator unknown: {why}")
    detail = "; ".join([*([alloc.conflict] if alloc.conflict else []), *alloc.warnings])
    return ProcessProof(
        pid, report.exe or exe, alloc.name, alloc.version, alloc.path, detail, alloc.conflict
    )
