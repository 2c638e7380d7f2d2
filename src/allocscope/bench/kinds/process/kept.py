"""A child's output, bounded: its first and last bytes kept, whatever it prints.

A command that prints gigabytes to stdout or stderr once filled a temporary file (and
then memory, when it was read back). ``Kept`` drains a pipe on a thread and keeps only
the head (where a loader's "cannot be preloaded" is said) and the tail (where a crash
is), with a count of what was dropped between them.
"""

from __future__ import annotations

import os
import threading

KEEP = 64 * 1024  # bytes kept at each end


class Kept:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._read, self.fd = os.pipe()  # give ``fd`` to the child, then call ``started``
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def started(self) -> None:
        """The child holds its copy of the write end: ours goes, so EOF can come."""
        os.close(self.fd)

    def _drain(self) -> None:
        try:
            while chunk := os.read(self._read, 1 << 16):
                with self._lock:
                    self.total += len(chunk)
                    room = self._keep - len(self._head)
                    self._head += chunk[:room]
                    self._tail += chunk[room:] if room > 0 else chunk
                    del self._tail[: max(0, len(self._tail) - self._keep)]
        finally:
            os.close(self._read)

    def text(self) -> str:
        """Head and tail (what lies between them said in one line), decoded leniently."""
        with self._lock:
            dropped = self.total - len(self._head) - len(self._tail)
            middle = (
                f"\n[... {dropped} bytes of output not kept ...]\n".encode() if dropped else b""
            )
            data = bytes(self._head) + middle + bytes(self._tail)
        return data.decode(errors="replace")

    def close(self, wait: float = 1.0) -> None:
        """Give the drain ``wait`` seconds to read what is left (a daemon that escaped may
        hold the pipe open: it is not waited for)."""
        self._thread.join(wait)
