"""The agent's bounds (what each means: inspect.agent), importable without its extras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    connections: int = 2_048  # served at once; each costs at most ~buffer_bytes of memory
    backlog: int = 128  # then waiting in the kernel's accept queue; past it refused
    header_timeout_ms: int = 5_000  # request line and headers must arrive within this
    buffer_bytes: int = 16_384  # request line and headers at most this long
    threads: int = 2  # Python threads running the application
    fresh_s: float = 1.0  # a collection serves every scrape within this after it
    stop_s: float = 0.3  # SIGTERM: connections still open after this are dropped
