"""FIPS states with a real OpenSSL FIPS provider (scripts/build-fips-provider.sh)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import child_env, run_allocscope

pytestmark = pytest.mark.fips
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fips_dir() -> Path:
    """The cached provider; `make test` builds it and passes ALLOCSCOPE_FIPS_DIR."""
    given = os.environ.get("ALLOCSCOPE_FIPS_DIR")
    if given:
        return Path(given)
    script = ROOT / "scripts" / "build-fips-provider.sh"
    proc = subprocess.run([script, "--check"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail("no FIPS provider: run scripts/build-fips-provider.sh (make fips)")
    return Path(proc.stdout.strip().splitlines()[-1])


def fips_env(directory: Path, cnf: str) -> dict[str, str]:
    return child_env(
        OPENSSL_CONF=str(directory / cnf), OPENSSL_MODULES=str(directory / "ossl-modules")
    )


def fips_report(env: dict[str, str], prelude: str = "") -> dict[str, Any]:
    code = (
        f"{prelude}\nimport json, dataclasses\nfrom allocscope.probe import fips\n"
        "print(json.dumps(dataclasses.asdict(fips.probe())))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_off_without_config() -> None:
    r = fips_report(child_env())
    assert r["state"] == "off"
    assert r["openssl"]["providers"]["fips"] is False and r["hashlib_fips_mode"] == 0
    assert r["md5"]["hashlib_md5"] and r["md5"]["openssl_md5"]


def test_on_with_the_builtin_md5_leak(fips_dir: Path) -> None:
    r = fips_report(fips_env(fips_dir, "openssl-fips.cnf"))
    assert r["state"] == "on"
    assert r["openssl"]["providers"]["fips"] is True
    assert r["openssl"]["default_properties_fips"] is True and r["hashlib_fips_mode"] == 1
    md5 = r["md5"]
    assert not md5["hashlib_md5"] and not md5["openssl_md5"]  # OpenSSL refuses MD5...
    assert md5["hashlib_new_md5"] and md5["builtin_md5"]  # ...CPython's own _md5 answers
    assert md5["md5_not_for_security"] and md5["openssl_sha256"]
    assert "hashlib.new('md5')" in r["reason"]
    assert r["openssl"]["libcrypto"].endswith("libcrypto.so.3")


def test_strict_config_without_default_provider_leaks_hashlib_md5(fips_dir: Path) -> None:
    r = fips_report(fips_env(fips_dir, "openssl-fips-strict.cnf"))
    assert r["state"] == "on"
    assert r["md5"]["hashlib_md5"]  # hashlib bound md5 to the built-in at import
    assert not r["md5"]["openssl_md5"]


def test_provider_without_default_properties_is_on_not_enforced(fips_dir: Path) -> None:
    r = fips_report(fips_env(fips_dir, "openssl-fips-nodefaultprops.cnf"))
    assert r["state"] == "on" and r["hashlib_fips_mode"] == 0
    assert "do not ask for fips=yes" in r["reason"]


def test_enforced_when_cpython_has_no_builtin_md5(fips_dir: Path) -> None:
    # What a CPython built --with-builtin-hashlib-hashes=blake2 (Wolfi, our image) sees.
    r = fips_report(
        fips_env(fips_dir, "openssl-fips.cnf"), "import sys; sys.modules['_md5'] = None"
    )
    assert r["state"] == "enforced", r["reason"]
    assert not any(r["md5"][k] for k in ("hashlib_md5", "hashlib_new_md5", "builtin_md5"))


def test_altered_mac_is_off_and_fails_verify(fips_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "fips"
    shutil.copytree(fips_dir, broken)
    cnf = broken / "fipsmodule.cnf"
    lines = cnf.read_text().splitlines()
    lines = [
        ("module-mac = " + "00:" * 31 + "00") if line.strip().startswith("module-mac") else line
        for line in lines
    ]
    cnf.write_text("\n".join(lines) + "\n")
    top = (broken / "openssl-fips.cnf").read_text().replace(str(fips_dir), str(broken))
    (broken / "openssl-fips.cnf").write_text(top)
    env = fips_env(broken, "openssl-fips.cnf")
    r = fips_report(env)
    assert r["state"] == "off" and r["openssl"]["providers"]["fips"] is False
    assert "fips provider is not active" in r["reason"]
    proc = run_allocscope("verify", "--fips", "on", env=env)
    assert proc.returncode == 1 and proc.stdout.startswith(
        "FAIL fips: expected on, but FIPS is off"
    )


def test_verify_fips_levels_with_the_real_provider(fips_dir: Path) -> None:
    env = fips_env(fips_dir, "openssl-fips.cnf")
    assert run_allocscope("verify", "--fips", "on", env=env).returncode == 0
    enforced = run_allocscope("verify", "--fips", "enforced", env=env)
    assert enforced.returncode == 1
    assert "FAIL fips: expected enforced, but FIPS is on" in enforced.stdout
