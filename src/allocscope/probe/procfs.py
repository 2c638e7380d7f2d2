"""Readers for /proc files. The root and pid are parameters so tests can use a fake tree."""

from __future__ import annotations

import os

from allocscope.probe.errors import ProbeError

DEFAULT_ROOT = "/proc"


def proc_path(name: str, proc_root: str = DEFAULT_ROOT, pid: int | str = "self") -> str:
    return os.path.join(proc_root, str(pid), name)


def read_text(name: str, proc_root: str = DEFAULT_ROOT, pid: int | str = "self") -> str:
    path = proc_path(name, proc_root, pid)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        raise ProbeError(f"cannot read {path}: {e.strerror or e}") from e


def mapped_files(proc_root: str = DEFAULT_ROOT, pid: int | str = "self") -> list[str]:
    """Distinct file paths mapped into the process, in mapping order."""
    seen: dict[str, None] = {}
    for line in read_text("maps", proc_root, pid).splitlines():
        # address perms offset dev inode pathname (the path may contain spaces)
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            path = parts[5].removesuffix(" (deleted)")
            seen.setdefault(path, None)
    return list(seen)


def key_values(text: str) -> dict[str, int]:
    """Parse 'Key:   123 kB' lines (status, smaps_rollup) into bytes (or plain numbers)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not fields[0].isdigit():
            continue
        scale = 1024 if len(fields) > 1 and fields[1] == "kB" else 1
        values[key.strip()] = int(fields[0]) * scale
    return values
