"""FIPS as it really behaves: OpenSSL's state, and whether MD5 is actually refused.

"FIPS on" is not "FIPS enforced": with OpenSSL refusing MD5, a CPython built with its
default built-in hashes still answers ``hashlib.new('md5')`` from its own ``_md5``. So
besides OpenSSL's own answers we try each MD5 path and report which ones answered.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from allocscope.probe import native, procfs
from allocscope.probe.errors import ProbeError

FipsState = Literal["off", "on", "enforced"]

OPENSSL_VERSION = 0  # OpenSSL_version() selectors
OPENSSL_MODULES_DIR = 8


@dataclass(frozen=True)
class OpenSSL:
    libcrypto: str  # the library _hashlib actually uses
    version: str  # runtime, from that library
    build_version: str | None  # the headers CPython was compiled against
    modules_dir: str | None
    providers: dict[str, bool]  # OSSL_PROVIDER_available for each name
    default_properties_fips: bool  # EVP_default_properties_is_fips_enabled


@dataclass(frozen=True)
class Md5Paths:
    """Whether each way of getting MD5 for security use answered (True) or was refused."""

    hashlib_md5: bool  # hashlib.md5()
    hashlib_new_md5: bool  # hashlib.new('md5')
    builtin_md5: bool  # CPython's own _md5 module
    openssl_md5: bool  # _hashlib.new('md5'): OpenSSL itself
    md5_not_for_security: bool  # hashlib.md5(usedforsecurity=False)
    openssl_sha256: bool  # sanity: OpenSSL itself must still answer an approved digest


@dataclass(frozen=True)
class FipsInfo:
    state: FipsState
    reason: str
    openssl: OpenSSL | None
    hashlib_fips_mode: int | None  # _hashlib.get_fips_mode()
    kernel_fips_enabled: bool | None  # /proc/sys/crypto/fips_enabled
    md5: Md5Paths
    openssl_conf: str | None  # OPENSSL_CONF, as declared
    openssl_modules: str | None  # OPENSSL_MODULES, as declared
    errors: tuple[str, ...]


def _answers(make: Callable[[], object]) -> bool:
    try:
        make()
    except (ValueError, ImportError, AttributeError):
        return False
    return True


def _builtin_md5() -> object:
    return importlib.import_module("_md5").md5()


def md5_paths() -> Md5Paths:
    hashlib_new: Callable[..., object] = hashlib.new
    return Md5Paths(
        hashlib_md5=_answers(lambda: hashlib.md5()),
        hashlib_new_md5=_answers(lambda: hashlib_new("md5")),
        builtin_md5=_answers(_builtin_md5),
        openssl_md5=_answers(lambda: importlib.import_module("_hashlib").new("md5")),
        md5_not_for_security=_answers(lambda: hashlib.md5(usedforsecurity=False)),
        openssl_sha256=_answers(lambda: importlib.import_module("_hashlib").new("sha256")),
    )


def _libcrypto_of_hashlib() -> tuple[ctypes.CDLL, str]:
    """The libcrypto that _hashlib loaded: resolve a symbol through _hashlib's own handle."""
    try:
        module = importlib.import_module("_hashlib")
    except ImportError as e:
        raise ProbeError(f"libcrypto is not loaded: _hashlib cannot be imported ({e})") from e
    origin = getattr(module, "__file__", None)
    lib = native.already_loaded(origin) if origin else native.libc()
    address = native.symbol_address(lib, "OpenSSL_version") if lib else None
    path = native.object_containing(address) if address else None
    if not path:
        raise ProbeError("libcrypto is not loaded: _hashlib does not resolve OpenSSL_version")
    crypto = native.already_loaded(path)
    if crypto is None:
        raise ProbeError(f"libcrypto at {path} is not mapped")
    return crypto, path


def openssl() -> OpenSSL:
    crypto, path = _libcrypto_of_hashlib()
    version_of = crypto.OpenSSL_version
    version_of.argtypes, version_of.restype = (ctypes.c_int,), ctypes.c_char_p
    available = crypto.OSSL_PROVIDER_available
    available.argtypes, available.restype = (ctypes.c_void_p, ctypes.c_char_p), ctypes.c_int
    is_fips = crypto.EVP_default_properties_is_fips_enabled
    is_fips.argtypes, is_fips.restype = (ctypes.c_void_p,), ctypes.c_int
    modules = version_of(OPENSSL_MODULES_DIR)
    return OpenSSL(
        libcrypto=path,
        version=(version_of(OPENSSL_VERSION) or b"").decode(),
        build_version=_build_version(),
        modules_dir=modules.decode().removeprefix('MODULESDIR: "').rstrip('"') if modules else None,
        providers={n: bool(available(None, n.encode())) for n in ("fips", "base", "default")},
        default_properties_fips=bool(is_fips(None)),
    )


def _build_version() -> str | None:
    try:
        api = importlib.import_module("_ssl")._OPENSSL_API_VERSION
    except (ImportError, AttributeError):
        return None
    major, minor, fix, patch = api[:4]
    # OpenSSL 3 numbers releases MNN00PP0: the third number of 3.0.19 is the "patch" field.
    return f"{major}.{minor}.{patch}" if major >= 3 else f"{major}.{minor}.{fix}"


def _kernel_fips(proc_root: str) -> bool | None:
    try:
        with open(os.path.join(proc_root, "sys/crypto/fips_enabled")) as f:
            return f.read().strip() == "1"
    except OSError:
        return None  # no such knob: a kernel without FIPS support


def summarise(ossl: OpenSSL | None, md5: Md5Paths) -> tuple[FipsState, str]:
    """The one-word state and the sentence that justifies it."""
    if ossl is None:
        return "off", "libcrypto is not loaded, so no FIPS provider can be in use"
    provider, props = ossl.providers.get("fips", False), ossl.default_properties_fips
    if not provider and not props:
        return "off", "the fips provider is not active and default properties do not ask for it"
    if not provider:
        return "off", (
            "default properties ask for fips=yes but the fips provider is not active "
            "(fips.so missing, its self-test failed or its MAC in fipsmodule.cnf is wrong): "
            "OpenSSL refuses approved algorithms and CPython falls back to its own code"
        )
    if not md5.openssl_sha256:
        return "off", "the fips provider is active but OpenSSL refuses SHA-256: FIPS is broken"
    if not props:
        return "on", "the fips provider is active but default properties do not ask for fips=yes"
    leaks = [
        label
        for label, answered in (
            ("hashlib.md5()", md5.hashlib_md5),
            ("hashlib.new('md5')", md5.hashlib_new_md5),
            ("the built-in _md5 module", md5.builtin_md5),
        )
        if answered
    ]
    if leaks:
        return "on", "the fips provider is active but MD5 is still answered by " + ", ".join(leaks)
    return "enforced", "the fips provider is active, fips=yes is the default and MD5 is refused"


def probe(proc_root: str = procfs.DEFAULT_ROOT) -> FipsInfo:
    errors: list[str] = []
    try:
        ossl: OpenSSL | None = openssl()
    except ProbeError as e:
        ossl = None
        errors.append(str(e))
    except (AttributeError, OSError) as e:  # e.g. an OpenSSL 1.1 without provider calls
        ossl = None
        errors.append(f"libcrypto cannot be asked about FIPS: {e}")
    try:
        fips_mode: int | None = importlib.import_module("_hashlib").get_fips_mode()
    except (ImportError, AttributeError, ValueError):
        fips_mode = None
    md5 = md5_paths()
    state, reason = summarise(ossl, md5)
    return FipsInfo(
        state=state,
        reason=reason,
        openssl=ossl,
        hashlib_fips_mode=fips_mode,
        kernel_fips_enabled=_kernel_fips(proc_root),
        md5=md5,
        openssl_conf=os.environ.get("OPENSSL_CONF"),
        openssl_modules=os.environ.get("OPENSSL_MODULES"),
        errors=tuple(errors),
    )
