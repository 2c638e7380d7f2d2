"""Which TCP ports a set of processes listens on (from /proc: their socket fds, matched
against the kernel's tables), to say "the server listens on 8000, not on 41234"."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterable

LISTEN = "0A"


def _socket_inodes(pids: Iterable[int], proc_root: str) -> set[int]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"{proc_root}/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"{proc_root}/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(int(link[8:-1]))
    return inodes


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening(pids: Iterable[int], proc_root: str = "/proc") -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket the processes hold, sorted."""
    inodes = _socket_inodes(pids, proc_root)
    found = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"{proc_root}/net/{table}") as f:
            for line in list(f)[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == LISTEN and int(fields[9]) in inodes:
                    addr, port = fields[1].split(":")
                    found.add((_address(addr), int(port, 16)))
    return sorted(found)
