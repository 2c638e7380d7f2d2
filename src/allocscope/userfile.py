"""Files the user named: read as regular files only, bounded in size, never blocking;
written in full or not at all.

``report /dev/zero`` once read until memory ran out, and a FIFO or ``/dev/full`` never
returned. Every reader of a user-given file (results, ``--requests``, variant TOML) goes
through ``read_text``: it opens without blocking (a FIFO with no writer would hold
``open`` forever), refuses anything but a regular file at once, and refuses a file past
its size limit before reading it (and one that grows past it while being read).
Every writer of an output file (results, report, charts) goes through ``replacing``: the
file is written beside its place and renamed over it, so a full disk or a read-only
directory leaves the old file or none, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import IO, Any

from allocscope.errors import AllocscopeError

MIB = 1 << 20
RESULTS_LIMIT = 256 * MIB  # a week-long soak's timeline is a few MiB
REQUESTS_LIMIT = 64 * MIB
CONFIG_LIMIT = 1 * MIB

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC  # a FIFO would block open()
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UserFileError(AllocscopeError, ValueError):
    """A user-given file that cannot be read as one (exit 3)."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bytes(path: str, limit: int, label: str | None = None) -> bytes:
    """The whole of the regular file ``path``; ``UserFileError`` ("LABEL: why") otherwise."""
    label = label or path
    try:
        before = os.stat(path)
        fd = -1 if not stat.S_ISREG(before.st_mode) else os.open(path, _FLAGS)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise UserFileError(f"{label}: {getattr(e, 'strerror', None) or e}") from None
    _regular(before, label)  # before open: opening a socket fails as ENXIO
    try:
        st = _regular(os.fstat(fd), label)  # again: it may have been replaced meanwhile
        if st.st_size > limit:
            raise UserFileError(f"{label}: {_size(st.st_size)}, past the limit of {_size(limit)}")
        chunks, total = [], 0
        while chunk := os.read(fd, min(MIB, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UserFileError(f"{label}: grew past the limit of {_size(limit)} while read")
        return b"".join(chunks)
    except OSError as e:
        raise UserFileError(f"{label}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _regular(st: os.stat_result, label: str) -> os.stat_result:
    if not stat.S_ISREG(st.st_mode):
        raise UserFileError(f"{label}: {_kind(st.st_mode)}, not a regular file")
    return st


def read_text(path: str, limit: int, label: str | None = None) -> str:
    """``read_bytes`` decoded as UTF-8; a file that is not says so."""
    data = read_bytes(path, limit, label)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserFileError(f"{label or path}: not UTF-8 text (byte {e.start})") from None


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


@contextlib.contextmanager
def replacing(path: str, binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: renamed over it once whole, removed on failure
    (a full disk, a read-only directory: ``UserFileError``, exit 3)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise UserFileError(f"cannot write {path}: {e.strerror or e}") from None
        raise
