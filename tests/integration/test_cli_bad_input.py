"""No traceback from info, verify or serve on any input, file or environment (issue 9,
"Everywhere"): each bad case ends in one documented exit code and says what is wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from allocscope import exitcodes
from tests.conftest import allocator_path, child_env

JEMALLOC = "<jemalloc>"  # placeholders, resolved to real paths per test
FAKE_JEMALLOC = "<fake-jemalloc>"


def _resolve(env: dict[str, str], fake: str) -> dict[str, str]:
    real = {JEMALLOC: allocator_path("jemalloc"), FAKE_JEMALLOC: fake}
    return {k: real.get(v, v) for k, v in env.items()}


# id -> (arguments, environment, exit code, text that stdout or stderr must hold)
CASES: dict[str, tuple[tuple[str, ...], dict[str, str], int, str]] = {
    # info: every declaration it cannot honour is reported, exit 0
    "info: missing preload": (
        ("info",), {"LD_PRELOAD": "/nope/libjemalloc.so.2"}, 0, "no such file"
    ),
    "info: odd LD_PRELOAD separators": (("info",), {"LD_PRELOAD": " : :: "}, 0, '"allocator"'),
    "info: a mimalloc named libjemalloc.so.2": (
        ("info",), {"LD_PRELOAD": FAKE_JEMALLOC}, 0, '"allocator"'
    ),
    "info --purge: a mimalloc named libjemalloc.so.2": (
        ("info", "--purge"), {"LD_PRELOAD": FAKE_JEMALLOC}, 0, '"allocator"'
    ),
    "info: jemalloc conf broken by a space": (
        ("info", "--human"),
        {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "background_thread:true, narenas:2"},
        0,
        "never read: jemalloc stopped at ' narenas:2'",
    ),
    "info: MALLOC_ARENA_MAX=abc": (("info",), {"MALLOC_ARENA_MAX": "abc"}, 0, "unproved"),
    "info: GLIBC_TUNABLES junk": (
        ("info",), {"GLIBC_TUNABLES": "glibc.malloc.arena_max=x:junk"}, 0, "unproved"
    ),
    "info: OPENSSL_CONF not a config": (("info",), {"OPENSSL_CONF": "/etc/hostname"}, 0, '"fips"'),
    "info: OPENSSL_MODULES missing": (("info",), {"OPENSSL_MODULES": "/nope"}, 0, '"fips"'),
    "info: unknown flag": (("info", "--bogus"), {}, exitcodes.USAGE, "unrecognized arguments"),
    # verify: a failed or unproved check is 1; a bad setting is 2
    "verify --strict with nothing expected": (
        ("verify", "--strict"), {}, exitcodes.CHECK_FAILED, "FAIL expectations: nothing to check"
    ),
    "verify: ALLOCSCOPE_VERIFY_STRICT=1": (
        ("verify", "-q"), {"ALLOCSCOPE_VERIFY_STRICT": "1"}, exitcodes.CHECK_FAILED, "(--strict)"
    ),
    "verify: ALLOCSCOPE_VERIFY_STRICT=maybe": (
        ("verify",), {"ALLOCSCOPE_VERIFY_STRICT": "maybe"}, exitcodes.USAGE, "not a boolean"
    ),
    "verify: ALLOCSCOPE_EXPECT_ALLOCATOR=foo": (
        ("verify",), {"ALLOCSCOPE_EXPECT_ALLOCATOR": "foo"}, exitcodes.USAGE, "expected one of"
    ),
    "verify: ALLOCSCOPE_EXPECT_FIPS=max": (
        ("verify",), {"ALLOCSCOPE_EXPECT_FIPS": "max"}, exitcodes.USAGE, "expected one of"
    ),
    "verify: --allocator foo": (
        ("verify", "--allocator", "foo"), {}, exitcodes.USAGE, "invalid choice"
    ),
    "verify: MALLOC_ARENA_MAX=abc is never proved": (
        ("verify",), {"MALLOC_ARENA_MAX": "abc"}, exitcodes.CHECK_FAILED,
        "FAIL arena_limit: MALLOC_ARENA_MAX=abc: unproved",
    ),
    "verify: MALLOC_ARENA_MAX=2 is proved": (
        ("verify", "--strict"), {"MALLOC_ARENA_MAX": "2"}, exitcodes.OK,
        "ok   arena_limit: MALLOC_ARENA_MAX=2: proved: 2 arenas",
    ),
    "verify: jemalloc blames the key it never read": (
        ("verify",),
        {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "background_thread:true, narenas:2"},
        exitcodes.CHECK_FAILED,
        "narenas: never read: jemalloc stopped at ' narenas:2' (Malformed conf string) "
        "(jemalloc said: <jemalloc>: Malformed conf string)",
    ),
    "verify: jemalloc's invalid pair": (
        ("verify",), {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "narenas:x"},
        exitcodes.CHECK_FAILED, "narenas: <jemalloc>: Invalid conf value: narenas:x",
    ),
    "verify: undecodable bytes in MALLOC_CONF": (
        ("verify",), {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "narenas:\udcff"},
        exitcodes.CHECK_FAILED, "narenas: <jemalloc>: Invalid conf value: narenas:\\udcff",
    ),
    "verify: undecodable bytes in LD_PRELOAD": (
        ("verify",), {"LD_PRELOAD": "/tmp/\udcff.so"}, exitcodes.CHECK_FAILED, "FAIL preload"
    ),
    "verify: a mimalloc named libjemalloc.so.2": (
        ("verify", "--allocator", "jemalloc"), {"LD_PRELOAD": FAKE_JEMALLOC},
        exitcodes.CHECK_FAILED, "FAIL allocator",
    ),
    "verify: a tab is not an LD_PRELOAD separator (ld.so agrees)": (
        ("verify",), {"LD_PRELOAD": "/nope/a.so\t/nope/b.so"}, exitcodes.CHECK_FAILED,
        "'/nope/a.so\\t/nope/b.so' (no such file)",
    ),
    "verify: missing preload": (
        ("verify",), {"LD_PRELOAD": "/nope/lib.so"}, exitcodes.CHECK_FAILED, "FAIL preload"
    ),
    # serve: the launcher's one JSON line and its code, before any server starts
    "serve: PORT=abc": (("serve",), {"PORT": "abc"}, exitcodes.USAGE, '"error":"bad_setting"'),
    "serve: WEB_CONCURRENCY=0": (
        ("serve",), {"WEB_CONCURRENCY": "0"}, exitcodes.USAGE, "outside 1..64"
    ),
    "serve: --threads abc": (("serve", "--threads", "abc"), {}, exitcodes.USAGE, "invalid int"),
    "serve: ALLOCSCOPE_EXPECT_FIPS=max": (
        ("serve",), {"ALLOCSCOPE_EXPECT_FIPS": "max"}, exitcodes.USAGE, "bad_setting"
    ),
    "serve: jemalloc expected, glibc serves": (
        ("serve",), {"ALLOCSCOPE_EXPECT_ALLOCATOR": "jemalloc"},
        exitcodes.STARTUP_CHECK_FAILED, "startup_check_failed",
    ),
    "serve: a mimalloc named libjemalloc.so.2": (
        ("serve",), {"LD_PRELOAD": FAKE_JEMALLOC, "ALLOCSCOPE_EXPECT_ALLOCATOR": "jemalloc"},
        exitcodes.STARTUP_CHECK_FAILED, "startup_check_failed",
    ),
    "serve: MALLOC_CONF key jemalloc never read": (
        ("serve",),
        {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "narenas:2, tcache:false"},
        exitcodes.STARTUP_CHECK_FAILED, "tcache: never read",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def fake_jemalloc(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real allocator under jemalloc's file name: mimalloc copied to libjemalloc.so.2."""
    path = tmp_path_factory.mktemp("fake") / "libjemalloc.so.2"
    shutil.copy(allocator_path("mimalloc"), path)
    return str(path)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_a_documented_code(case: str, fake_jemalloc: str) -> None:
    args, env, code, says = CASES[case]
    # serve's cases all stop before binding; port 1 would be refused if one did not
    environ = child_env(HOST="127.0.0.1", PORT="1")
    environ.update(_resolve(env, fake_jemalloc))
    proc = subprocess.run(  # not run_allocscope: stderr may hold bytes that are not UTF-8
        [sys.executable, "-m", "allocscope", *args],
        env=environ,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert says in proc.stdout + proc.stderr, (proc.stdout[-2000:], proc.stderr[-2000:])


def test_an_unexpected_error_is_one_line_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last resort in cli.main: a bug still ends in one line, not a traceback."""
    from allocscope import cli
    from allocscope.commands import info

    def broken(_: object) -> int:
        raise KeyError("no such fact\nsecond line")

    monkeypatch.setattr(info, "run", broken)
    monkeypatch.delenv("ALLOCSCOPE_DEBUG", raising=False)
    assert cli.main(["info"]) == exitcodes.INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("allocscope info: internal error: KeyError")


def test_an_unexpected_os_error_is_a_bug_with_its_traceback_on_demand(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError no code expected (not stdout, not a file the user named) is exit 70."""
    from allocscope import cli
    from allocscope.commands import info

    def broken(_: object) -> int:
        raise PermissionError(13, "Permission denied", "/proc/self/something")

    monkeypatch.setattr(info, "run", broken)
    monkeypatch.delenv("ALLOCSCOPE_DEBUG", raising=False)
    assert cli.main(["info"]) == exitcodes.INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("allocscope info: internal error: PermissionError")
    assert err.count("\n") == 1
    monkeypatch.setenv("ALLOCSCOPE_DEBUG", "1")
    with pytest.raises(PermissionError):  # the traceback is the interpreter's to print
        cli.main(["info"])


def test_an_unwritable_stdout_is_bad_input_in_one_line() -> None:
    with open(os.devnull, "rb") as read_only:  # writing to it fails with EBADF
        proc = subprocess.run(
            [sys.executable, "-m", "allocscope", "info"],
            env=child_env(),
            stdout=read_only,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == exitcodes.BAD_INPUT
    assert proc.stderr.startswith("allocscope info: cannot write to stdout: "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
