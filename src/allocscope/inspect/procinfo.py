"""Reading another process's /proc entries, turning its disappearance into one error.

Every read goes through :class:`Proc`, which knows the pid's start time: a file that
vanishes, or a start time that changed (the pid was reused), means the process exited
while we read it, whatever file we were on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from allocscope.inspect.errors import Exited, NoSuchProcess

_PF_KTHREAD = 0x00200000


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str  # "" for anonymous memory, "[heap]", "[stack]", or a file path

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Stat:
    command: str  # comm, as the kernel keeps it (15 characters)
    state: str  # R, S, D, Z, ...
    ppid: int
    flags: int
    start_time: int  # clock ticks after boot: with the pid, identifies the process

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & _PF_KTHREAD)


def parse_stat(text: str) -> Stat:
    head, _, rest = text.rpartition(")")  # comm may hold spaces and parentheses
    fields = rest.split()
    return Stat(
        command=head.partition("(")[2],
        state=fields[0],
        ppid=int(fields[1]),
        flags=int(fields[6]),
        start_time=int(fields[19]),
    )


def parse_maps(text: str) -> list[Mapping]:
    maps = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            continue
        start, _, end = parts[0].partition("-")
        path = parts[5].removesuffix(" (deleted)") if len(parts) == 6 else ""
        maps.append(
            Mapping(int(start, 16), int(end, 16), parts[1], int(parts[2], 16), int(parts[4]), path)
        )
    return maps


class Proc:
    """One process under a procfs root; reads raise Exited once it is gone."""

    def __init__(self, pid: int, proc_root: str = "/proc") -> None:
        self.pid = pid
        self.root = proc_root
        self.dir = os.path.join(proc_root, str(pid))
        try:
            with open(os.path.join(self.dir, "stat"), encoding="utf-8", errors="replace") as f:
                self.stat = parse_stat(f.read())
        except (FileNotFoundError, ProcessLookupError) as e:
            raise NoSuchProcess(f"no such process: {pid}") from e
        except (OSError, ValueError, IndexError) as e:
            raise NoSuchProcess(f"cannot read {self.dir}/stat: {e}") from e

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def text(self, name: str) -> str:
        return self.raw(name).decode("utf-8", errors="replace")

    def raw(self, name: str) -> bytes:
        """The bytes of /proc/PID/name; OSError for parts we may not read (EACCES...)."""
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError as e:
            self.check_alive(e)
            raise

    def link(self, name: str) -> str:
        try:
            return os.readlink(self.path(name))
        except OSError as e:
            self.check_alive(e)
            raise

    def thread_names(self) -> list[str]:
        """The comm of each thread (a thread that exits meanwhile is skipped)."""
        names = []
        for tid in os.listdir(self.path("task")):
            try:
                with open(self.path(f"task/{tid}/comm"), encoding="utf-8", errors="replace") as f:
                    names.append(f.read())
            except FileNotFoundError:
                continue
        return names

    def in_root(self, path: str) -> str:
        """``path`` as the process sees it: its mount namespace (/proc/PID/root), and for a
        relative path its working directory (/proc/PID/cwd)."""
        if not path.startswith("/"):
            return os.path.join(self.path("cwd"), path)
        return self.path("root") + path

    def check_alive(self, error: OSError | None = None) -> None:
        """Raise NotInspectable when the process is gone, a zombie, or the pid names another."""
        try:
            with open(self.path("stat"), encoding="utf-8", errors="replace") as f:
                now = parse_stat(f.read())
            gone = now.start_time != self.stat.start_time or now.state in ("Z", "X")
        except (OSError, ValueError, IndexError):
            gone = True
        if gone:
            raise Exited(f"process {self.pid} exited while reading") from error


def all_pids(proc_root: str = "/proc") -> list[int]:
    return sorted(int(n) for n in os.listdir(proc_root) if n.isdigit())


def parents(proc_root: str = "/proc") -> dict[int, int]:
    """pid -> ppid for every process (vanishing ones are skipped)."""
    found = {}
    for pid in all_pids(proc_root):
        try:
            with open(os.path.join(proc_root, str(pid), "stat"), encoding="utf-8") as f:
                found[pid] = parse_stat(f.read()).ppid
        except (OSError, ValueError, IndexError):
            continue
    return found


def process_tree(pid: int, proc_root: str = "/proc") -> list[int]:
    """``pid`` and all its descendants, parents before children."""
    Proc(pid, proc_root)  # NoSuchProcess when it is not there
    children: dict[int, list[int]] = {}
    for child, parent in parents(proc_root).items():
        children.setdefault(parent, []).append(child)
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue += sorted(children.get(current, ()))
    return tree


def environ(data: bytes) -> dict[str, str]:
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env
