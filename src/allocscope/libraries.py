"""Where allocator libraries live on the systems we meet (Debian, Wolfi/Chainguard, local)."""

from __future__ import annotations

import os
import sysconfig

# Shared-object names per allocator, preferred first.
SONAMES: dict[str, tuple[str, ...]] = {
    "jemalloc": ("libjemalloc.so.2",),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc.so"),
}


def search_dirs() -> list[str]:
    """Debian's multiarch dir, then Wolfi's /usr/lib (every architecture), then local ones."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    return [*dirs, "/usr/lib", "/usr/local/lib", "/usr/lib64"]


def find(allocator: str, dirs: list[str] | None = None) -> str | None:
    """Path of ``allocator``'s shared library, or None when it is not installed."""
    for directory in dirs if dirs is not None else search_dirs():
        for soname in SONAMES.get(allocator, ()):
            path = os.path.join(directory, soname)
            if os.path.isfile(path):
                return path
    return None
