from __future__ import annotations

from allocscope.errors import AllocscopeError


class ProbeError(AllocscopeError):
    """A fact could not be read; the message says which and why."""
