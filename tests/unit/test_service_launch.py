"""Settings, vendor choice and exit codes of the launcher; /echo's transform; the collector."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pytest

from allocscope import exitcodes
from allocscope.prometheus import AllocscopeCollector
from allocscope.service import launch
from allocscope.service.app import Echo, Worker


def test_launcher_imports_only_the_standard_library() -> None:
    source = Path(launch.__file__).read_text()
    top = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    assert not [ln for ln in top if "allocscope" in ln or "granian" in ln], top


def test_defaults_mirror_the_demo() -> None:
    s = launch.Settings.from_environ({})
    assert (s.host, s.port, s.workers, s.threads) == ("127.0.0.1", 8080, 1, 5)
    assert s.startup_check and not s.access_log


def test_environment_and_flags() -> None:
    env = {"HOST": "0.0.0.0", "PORT": "9000", "WEB_CONCURRENCY": "3", "ALLOCSCOPE_THREADS": "8"}
    s = launch.Settings.from_environ(env)
    assert (s.host, s.port, s.workers, s.threads) == ("0.0.0.0", 9000, 3, 8)
    parser = argparse.ArgumentParser()
    launch.add_arguments(parser)
    args = parser.parse_args(["--port", "9100", "--no-startup-check", "--access-log"])
    s = launch.settings_from(args, env)
    assert (s.port, s.workers, s.startup_check, s.access_log) == (9100, 3, False, True)


@pytest.mark.parametrize(
    "env",
    [
        {"PORT": "http"},
        {"PORT": "0"},
        {"WEB_CONCURRENCY": "0"},
        {"ALLOCSCOPE_MAX_HEADER_BYTES": "100"},  # granian's floor is 8192
        {"ALLOCSCOPE_ACCESS_LOG": "maybe"},
    ],
)
def test_bad_settings_are_usage_errors(env: dict[str, str]) -> None:
    with pytest.raises(launch.LaunchError) as caught:
        launch.Settings.from_environ(env)
    assert caught.value.code == exitcodes.USAGE


def test_server_args_carry_every_limit() -> None:
    s = launch.Settings(port=9000, workers=2, threads=7, header_timeout_ms=1500)
    args = s.server_args()
    pairs = dict(itertools.pairwise(args))
    assert pairs["--interface"] == "wsgi" and pairs["--http"] == "1"
    assert pairs["--port"] == "9000" and pairs["--workers"] == "2"
    assert pairs["--blocking-threads"] == "7"
    assert pairs["--http1-header-read-timeout"] == "1500"
    assert pairs["--http1-buffer-size"] == str(s.max_header_bytes)
    assert args[-1] == launch.APP_FACTORY and "--factory" in args
    # The app reads its limits back from the environment the launcher hands on.
    assert launch.Settings.from_environ(s.environ()) == s


def test_choose_vendor_prefers_the_exact_tag(tmp_path: Path) -> None:
    (tmp_path / "cpython-311").mkdir()
    (tmp_path / "cpython-312").mkdir()
    assert launch.choose_vendor(str(tmp_path), "cpython-312") == (
        str(tmp_path / "cpython-312"),
        "exact",
    )


def test_fallback_only_when_every_extension_loads(tmp_path: Path) -> None:
    only = tmp_path / "cpython-3xx"
    only.mkdir()
    (only / "fast.abi3.so").write_bytes(b"")  # stable ABI: fine anywhere
    (only / "libbundled-1a2b.so.1").write_bytes(b"")  # a bundled C library, not a module
    assert launch.choose_vendor(str(tmp_path), "cpython-399")[1] == "fallback"
    (only / "mod.cpython-399-x86_64-linux-musl.so").write_bytes(b"")
    with pytest.raises(launch.LaunchError) as caught:
        launch.choose_vendor(str(tmp_path), "cpython-399")
    assert caught.value.code == exitcodes.ABI_MISMATCH


def test_transform_rebuilds_the_document() -> None:
    doc = {"b": [1, "ab", {"c": None}], "a": True, "f": 1.5}
    transform = Echo().transform
    assert transform(doc) == {"a": True, "b": [{"c": None}, "ba", 2], "f": 3.0}
    assert list(transform(doc)) == ["a", "b", "f"]


def test_collector_labels_every_series_with_the_pid() -> None:
    worker = Worker(launch.Settings())
    families = list(AllocscopeCollector(server=worker.server).collect())
    names = {f.name for f in families}
    assert {"allocscope_allocator", "allocscope_fips_state", "allocscope_build"} <= names
    assert "allocscope_allocator_bytes" in names
    for family in families:
        for sample in family.samples:
            assert sample.labels["pid"] == str(worker.pid), sample
