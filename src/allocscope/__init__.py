"""allocscope: the allocator and FIPS crypto a Python process really runs on."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Snapshot", "__version__", "snapshot"]


def __getattr__(name: str) -> object:
    # Lazy so that `import allocscope` stays cheap for the launcher.
    if name in ("Snapshot", "snapshot"):
        import allocscope.probe.snapshot as _snapshot_module

        return getattr(_snapshot_module, name)
    raise AttributeError(name)
