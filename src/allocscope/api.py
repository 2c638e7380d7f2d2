"""The library's front door: ``allocscope.snapshot()`` and ``allocscope.verify()``.

Both read this process as it is now. ``verify`` runs the same checks as ``allocscope
verify``, the service's ``/readyz`` and the launcher's start-up check.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocscope.expectations import Check, Expectations, check
from allocscope.probe.snapshot import Snapshot, snapshot

__all__ = ["Check", "Expectations", "Snapshot", "Verdict", "snapshot", "verify"]


@dataclass(frozen=True)
class Verdict:
    """Every check that applied, and whether all of them passed."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def reasons(self) -> list[str]:
        """'name: detail' for each failed check, as /readyz and verify print them."""
        return [f"{c.name}: {c.detail}" for c in self.failed]


def verify(expectations: Expectations | None = None, *, snap: Snapshot | None = None) -> Verdict:
    """Check this process (or ``snap``) against ``expectations``.

    Without expectations they come from ``ALLOCSCOPE_EXPECT_*`` (a ValueError names a
    variable it cannot read). With none set, what is declared is still checked: every
    ``LD_PRELOAD`` entry loaded, every ``MALLOC_CONF`` key in effect, and jemalloc's
    background thread running when it was requested.
    """
    want = Expectations.from_environ() if expectations is None else expectations
    return Verdict(tuple(check(snap if snap is not None else snapshot(), want)))
