"""Every bad declaration yields a precise report and a clean exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import JEMALLOC_VERSION, child_env, run_allocscope

Info = Callable[..., dict[str, Any]]


def warnings_of(snap: dict[str, Any]) -> list[str]:
    return list(snap["allocator"]["warnings"])


def test_missing_preload_file_is_not_reported_as_jemalloc(info: Info) -> None:
    snap = info(LD_PRELOAD="/nonexistent/libjemalloc.so.2")
    assert snap["allocator"]["name"] == "glibc"
    assert "LD_PRELOAD entry '/nonexistent/libjemalloc.so.2' is not loaded: no such file" in (
        warnings_of(snap)
    )
    assert "cannot be preloaded" in snap["_stderr"]  # the loader's own complaint


def test_non_elf_preload(info: Info, tmp_path: Path) -> None:
    fake = tmp_path / "libjemalloc.so.2"
    fake.write_text("#!/bin/sh\n")
    snap = info(LD_PRELOAD=str(fake))
    assert snap["allocator"]["name"] == "glibc"
    assert f"LD_PRELOAD entry '{fake}' is not loaded: not an ELF file" in warnings_of(snap)


def test_non_allocator_library(info: Info) -> None:
    libz = next(
        p for p in ("/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1",
                    "/usr/lib/aarch64-linux-gnu/libz.so.1") if os.path.exists(p)
    )  # fmt: skip
    snap = info(LD_PRELOAD=libz)
    assert snap["allocator"]["name"] == "glibc"
    assert f"LD_PRELOAD entry '{libz}' is loaded but is not a memory allocator" in (
        warnings_of(snap)
    )


def test_several_allocators_preloaded_is_a_failure(jemalloc: str, tcmalloc: str) -> None:
    env = child_env(LD_PRELOAD=f"{jemalloc}:{tcmalloc}")
    proc = run_allocscope("info", env=env)
    assert proc.returncode == 1, proc.stderr  # not a pass: one may free what the other allocated
    snap = json.loads(proc.stdout)
    assert snap["allocator"]["name"] == "jemalloc"  # the first one wins the symbol lookup
    assert snap["allocator"]["conflict"].startswith("2 allocators mapped at once: jemalloc (")
    assert "tcmalloc (" in snap["allocator"]["conflict"]
    assert "FAIL 2 allocators mapped at once" in proc.stderr
    w = warnings_of(snap)
    assert "LD_PRELOAD names several allocators (jemalloc, tcmalloc); jemalloc serves malloc" in w
    assert any(x.endswith("is mapped but does not serve malloc (jemalloc does)") for x in w)
    verify = run_allocscope("verify", "--allocator", "jemalloc", env=env)
    assert verify.returncode == 1
    assert "FAIL one_allocator: 2 allocators mapped at once" in verify.stdout


def test_renamed_and_misnamed_allocators_are_named_by_symbols(
    disguised: tuple[str, str],
) -> None:
    renamed, misnamed = disguised
    a = run_allocscope("info", env=child_env(LD_PRELOAD=renamed))
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["allocator"]["name"] == "jemalloc"
    b = run_allocscope("info", env=child_env(LD_PRELOAD=misnamed))
    assert b.returncode == 0, b.stderr
    snap = json.loads(b.stdout)["allocator"]
    assert (snap["name"], snap["source"], snap["path"]) == ("tcmalloc", "LD_PRELOAD", misnamed)


def test_malloc_conf_under_glibc(info: Info) -> None:
    snap = info(MALLOC_CONF="narenas:2")
    assert "MALLOC_CONF is set but glibc serves malloc: it has no effect" in warnings_of(snap)


def test_pythonmalloc_malloc_is_reported(info: Info, jemalloc: str) -> None:
    snap = info(LD_PRELOAD=jemalloc, PYTHONMALLOC="malloc")
    a = snap["allocator"]
    assert a["declared"]["pythonmalloc"] == "malloc"
    assert a["python_allocator"] == "malloc (every object goes to the C allocator)"
    assert a["name"] == "jemalloc"


def test_unreadable_proc_still_reports(tmp_path: Path) -> None:
    # The probe's procfs root is a parameter (for tests); the CLI no longer offers it,
    # since `info --proc` answered with the CLI's own allocator (use `inspect PID`).
    code = (
        "import json, sys; from allocscope.probe.snapshot import snapshot\n"
        "print(json.dumps(snapshot(sys.argv[1]).to_dict()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    import json

    snap = json.loads(proc.stdout)
    assert snap["allocator"]["name"] == "glibc"  # dladdr still places malloc
    assert any("cannot read" in w for w in snap["allocator"]["warnings"])
    assert snap["memory"] is None
    assert any("cannot read" in e and "status" in e for e in snap["errors"])


def test_info_proc_option_is_gone() -> None:
    proc = run_allocscope("info", "--proc", "/proc")
    assert proc.returncode == 2 and "unrecognized arguments: --proc" in proc.stderr


def test_libcrypto_not_loaded() -> None:
    code = (
        "import sys; sys.modules['_hashlib'] = None\n"
        "import json; from allocscope.probe import fips\n"
        "print(json.dumps(fips.probe().__dict__, default=lambda o: o.__dict__))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["state"] == "off"
    assert report["reason"] == "libcrypto is not loaded, so no FIPS provider can be in use"
    assert report["errors"][0].startswith("libcrypto is not loaded: _hashlib cannot be imported")


def test_verify_under_glibc_fails_with_reason_and_exit_1() -> None:
    proc = run_allocscope("verify", "--allocator", "jemalloc", env=child_env())
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL allocator: expected jemalloc, but glibc")


def test_verify_names_a_missing_preload(jemalloc: str) -> None:
    env = child_env(LD_PRELOAD="/nonexistent/libjemalloc.so.2")
    proc = run_allocscope("verify", "--allocator", "jemalloc", env=env)
    assert proc.returncode == 1
    assert "LD_PRELOAD entry '/nonexistent/libjemalloc.so.2' is not loaded: no such file" in (
        proc.stdout
    )


def test_verify_passes_under_jemalloc_and_fails_on_misspelt_conf(jemalloc: str) -> None:
    ok = run_allocscope(
        "verify", "--allocator", "jemalloc",
        env=child_env(LD_PRELOAD=jemalloc, MALLOC_CONF="narenas:2,background_thread:true"),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout
    assert (
        f"ok   allocator: jemalloc {JEMALLOC_VERSION} (via LD_PRELOAD) serves malloc" in ok.stdout
    )
    bad = run_allocscope(
        "verify", "--allocator", "jemalloc",
        env=child_env(LD_PRELOAD=jemalloc, MALLOC_CONF="narenas:2,dirty_decy_ms:5"),
    )  # fmt: skip
    assert bad.returncode == 1
    assert "FAIL malloc_conf: MALLOC_CONF keys not in effect: dirty_decy_ms" in bad.stdout
    relaxed = run_allocscope(
        "verify", "--allocator", "jemalloc", "--no-malloc-conf",
        env=child_env(LD_PRELOAD=jemalloc, MALLOC_CONF="dirty_decy_ms:5"),
    )  # fmt: skip
    assert relaxed.returncode == 0


def test_verify_usage_error_is_exit_2() -> None:
    proc = run_allocscope("verify", "--allocator", "jemaloc")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize(
    ("var", "value"),
    [("ALLOCSCOPE_EXPECT_ALLOCATOR", "jemaloc"), ("ALLOCSCOPE_EXPECT_PRELOAD", "ture")],
)
def test_verify_unreadable_expectation_in_env_is_exit_2(var: str, value: str) -> None:
    proc = run_allocscope("verify", env=child_env(**{var: value}))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"allocscope verify: {var}={value!r}")
    assert len(proc.stderr.splitlines()) == 1 and not proc.stdout


def test_info_human_view() -> None:
    proc = run_allocscope("info", "--human")
    assert proc.returncode == 0
    assert proc.stdout.startswith("allocator    glibc")
    assert "fips         off:" in proc.stdout
