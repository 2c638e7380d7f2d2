from __future__ import annotations


class ProbeError(Exception):
    """A fact could not be read; the message says which and why."""
