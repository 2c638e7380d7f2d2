"""The probe: read-only facts about the running process.

Modules, one concern each: ``allocator`` (who serves malloc), ``jemalloc`` and ``glibc``
(heap statistics), ``memory`` (process memory), ``fips`` (crypto policy as it behaves),
``runtime`` (interpreter) and ``snapshot`` (all of them as one record).
"""

from __future__ import annotations

from allocscope.probe.errors import ProbeError

__all__ = ["ProbeError"]
