"""The one-word FIPS state follows from OpenSSL's answers and the MD5 probes."""

from __future__ import annotations

import dataclasses

from allocscope.probe.fips import Md5Paths, OpenSSL, summarise

ALL_ANSWER = Md5Paths(True, True, True, True, True, True)
REFUSED = Md5Paths(False, False, False, False, True, True)


def ossl(fips: bool, props: bool) -> OpenSSL:
    return OpenSSL(
        libcrypto="/lib/libcrypto.so.3",
        version="OpenSSL 3.0.19",
        build_version="3.0.19",
        modules_dir=None,
        providers={"fips": fips, "base": fips, "default": True},
        default_properties_fips=props,
    )


def test_no_libcrypto_is_off() -> None:
    state, reason = summarise(None, ALL_ANSWER)
    assert state == "off" and "libcrypto is not loaded" in reason


def test_no_provider_is_off() -> None:
    assert summarise(ossl(False, False), ALL_ANSWER)[0] == "off"


def test_active_provider_with_builtin_leak_is_on_and_names_the_leak() -> None:
    leak = dataclasses.replace(REFUSED, hashlib_new_md5=True, builtin_md5=True)
    state, reason = summarise(ossl(True, True), leak)
    assert state == "on"
    assert "hashlib.new('md5')" in reason and "_md5" in reason and "hashlib.md5()" not in reason


def test_everything_refused_is_enforced() -> None:
    assert summarise(ossl(True, True), REFUSED)[0] == "enforced"


def test_provider_without_default_properties_is_only_on() -> None:
    state, reason = summarise(ossl(True, False), REFUSED)
    assert state == "on" and "default properties" in reason


def test_fips_requested_without_provider_is_off_and_says_why() -> None:
    # What an altered MAC or a missing fips.so looks like: CPython's built-ins still answer.
    state, reason = summarise(ossl(False, True), ALL_ANSWER)
    assert state == "off" and "fips provider is not active" in reason


def test_provider_refusing_sha256_is_off() -> None:
    broken = dataclasses.replace(REFUSED, openssl_sha256=False)
    state, reason = summarise(ossl(True, True), broken)
    assert state == "off" and "SHA-256" in reason
