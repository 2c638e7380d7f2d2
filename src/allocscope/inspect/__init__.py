"""Facts about another process, from /proc alone (no ptrace): any language.

A stable API for callers (the bench's command/service workloads, the agent):
``inspect_process(pid, proc_root) -> ProcessReport`` and ``process_tree(pid, proc_root)``.
"""

from __future__ import annotations

from allocscope.inspect.errors import InspectError, NoSuchProcess, NotInspectable
from allocscope.inspect.procinfo import process_tree
from allocscope.inspect.report import SCHEMA, ProcessReport, Unknown, inspect_process

__all__ = [
    "SCHEMA",
    "InspectError",
    "NoSuchProcess",
    "NotInspectable",
    "ProcessReport",
    "Unknown",
    "inspect_process",
    "process_tree",
]
