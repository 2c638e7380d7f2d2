"""The container of another process, from its cgroup (v1 or v2): the memory cgroup's
path, the container id it carries, and the memory used and allowed."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Container:
    cgroup: str | None  # the memory cgroup's path (cgroup v2: the unified path)
    container_id: (
        str | None
    )  # 64 hex digits, when the path carries one (docker, containerd, cri-o, podman)
    memory_current_bytes: int | None
    memory_max_bytes: int | None  # None: no limit (or unknown; see unknowns)


_CONTAINER_ID = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)")
_V1_NO_LIMIT = 2**60  # cgroup v1 reports "no limit" as a page-rounded LONG_MAX


def container(cgroup_text: str, cgroup_root: str = "/sys/fs/cgroup") -> tuple[Container, list[str]]:
    """The container record and, for each figure that could not be read, why."""
    problems: list[str] = []
    v1_memory = v2 = None
    for line in cgroup_text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[1] == "":
            v2 = fields[2]
        elif "memory" in fields[1].split(","):
            v1_memory = fields[2]
    path = v1_memory if v1_memory is not None else v2
    found = _CONTAINER_ID.search(cgroup_text.replace("\n", "/\n"))
    current = limit = None
    if v1_memory is not None and os.path.isdir(os.path.join(cgroup_root, "memory")):
        base = os.path.join(cgroup_root, "memory") + v1_memory
        current = _read_int(os.path.join(base, "memory.usage_in_bytes"), problems)
        limit = _read_int(os.path.join(base, "memory.limit_in_bytes"), problems)
        if limit is not None and limit >= _V1_NO_LIMIT:
            limit = None
    elif v2 is not None:
        unified = os.path.join(cgroup_root, "unified")
        base = (unified if os.path.isdir(unified) else cgroup_root) + v2
        current = _read_int(os.path.join(base, "memory.current"), problems)
        limit = _read_int(os.path.join(base, "memory.max"), problems)  # "max" reads as None
    found_id = found.group(1) if found else None
    return Container(path, found_id, current, limit), problems


def _read_int(path: str, problems: list[str]) -> int | None:
    """An integer file of the cgroup ('max' is None); a failure is noted in ``problems``."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError as e:
        problems.append(f"cannot read {path}: {e.strerror or e}")
        return None
    return int(text) if text.isdigit() else None
