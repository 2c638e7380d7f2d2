"""The in-process hook for Python targets: a ``sitecustomize`` put first on PYTHONPATH.

:func:`prepare` makes a directory holding that ``sitecustomize.py`` and a link to this
allocscope package (the target's interpreter may not have allocscope installed; the probe
needs only the standard library). :func:`read_events` reads what each Python process
wrote there: ``start`` (its allocator, seen from inside), ``trim`` (glibc-trim: each
``malloc_trim(0)`` and the RSS it returned) and ``exit``.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import allocscope

DIR_ENV = "ALLOCSCOPE_INJECT_DIR"
TRIM_ENV = "ALLOCSCOPE_TRIM_EVERY"  # seconds between malloc_trim(0) calls; unset: never
EVENTS = "events"  # the subdirectory with one <pid>.jsonl per Python process


def prepare(directory: str) -> str:
    """Fill ``directory`` with the hook; return the path to put first on PYTHONPATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(os.path.abspath(allocscope.__file__))  # the package, wherever
    os.makedirs(os.path.join(directory, EVENTS), exist_ok=True)
    shutil.copyfile(
        os.path.join(here, "sitecustomize.py"), os.path.join(directory, "sitecustomize.py")
    )
    link = os.path.join(directory, "allocscope")
    if not os.path.lexists(link):
        os.symlink(package, link)
    return directory


def environ(
    directory: str, parent_pythonpath: str | None, trim_every: float | None
) -> dict[str, str]:
    """The variables that turn the hook on in every Python process of the target."""
    path = directory if not parent_pythonpath else f"{directory}{os.pathsep}{parent_pythonpath}"
    env = {"PYTHONPATH": path, DIR_ENV: directory}
    if trim_every:
        env[TRIM_ENV] = f"{trim_every:g}"
    return env


def read_events(directory: str) -> list[dict[str, Any]]:
    """Every event every Python process wrote, in file order per process."""
    out: list[dict[str, Any]] = []
    folder = os.path.join(directory, EVENTS)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for line in f:
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a kill
                    if isinstance(doc, dict):
                        out.append(doc)
        except OSError:
            continue
    return out
