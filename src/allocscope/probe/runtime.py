"""The interpreter and the libraries around it."""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from dataclasses import dataclass

# Distributions whose versions matter when reading a report.
DISTRIBUTIONS = ("allocscope", "granian", "prometheus-client", "psutil")


@dataclass(frozen=True)
class Runtime:
    python_version: str
    implementation: str
    cache_tag: str | None  # 'cpython-313': the vendor directory is chosen by it
    soabi: str | None  # 'cpython-313-x86_64-linux-gnu': must match between build and run
    platform: str
    machine: str
    executable: str
    pid: int
    packages: dict[str, str]  # distribution -> version, for those installed


def installed_versions(names: tuple[str, ...] = DISTRIBUTIONS) -> dict[str, str]:
    from importlib import metadata  # heavy (email, zipfile): only when asked

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def read(packages: bool = True) -> Runtime:
    """The interpreter; ``packages=False`` skips the installed versions (importlib.metadata)."""
    return Runtime(
        python_version=platform.python_version(),
        implementation=sys.implementation.name,
        cache_tag=sys.implementation.cache_tag,
        soabi=sysconfig.get_config_var("SOABI"),
        platform=platform.platform(),
        machine=platform.machine(),
        executable=sys.executable,
        pid=os.getpid(),
        packages=installed_versions() if packages else {},
    )
