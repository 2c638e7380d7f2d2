"""The crypto of another process: the libcrypto and OpenSSL FIPS provider it mapped, the
OpenSSL variables it started with, and whether the kernel runs in FIPS mode."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

from allocscope.inspect.procinfo import Mapping
from allocscope.probe import procfs


@dataclass(frozen=True)
class Crypto:
    libcrypto: str | None  # the libcrypto mapped, if any
    fips_provider: str | None  # OpenSSL's fips.so, when mapped (loaded by the process)
    openssl_conf: str | None  # OPENSSL_CONF the process was started with
    openssl_modules: str | None
    kernel_fips_enabled: bool | None  # /proc/sys/crypto/fips_enabled; None if absent


def read(maps: list[Mapping], env: MappingABC[str, str] | None, proc_root: str) -> Crypto:
    paths = list(dict.fromkeys(m.path for m in maps if m.path.startswith("/")))  # once each
    libcrypto = next((p for p in paths if re.match(r"libcrypto\.so", os.path.basename(p))), None)
    fips = next((p for p in paths if os.path.basename(p) == "fips.so"), None)
    kernel = kernel_fips_enabled(proc_root)
    conf = env.get("OPENSSL_CONF") if env is not None else None
    modules = env.get("OPENSSL_MODULES") if env is not None else None
    return Crypto(libcrypto, fips, conf, modules, kernel)


@functools.lru_cache(maxsize=8)
def kernel_fips_enabled(proc_root: str) -> bool | None:
    """/proc/sys/crypto/fips_enabled, read once: it is set at boot (None if absent)."""
    try:
        return procfs.read_text("sys/crypto/fips_enabled", proc_root, "").strip() == "1"
    except Exception:
        return None
