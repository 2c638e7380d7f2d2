"""The probe in child interpreters under the real Debian allocators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import JEMALLOC_VERSION

Info = Callable[..., dict[str, Any]]


def test_glibc_by_default(info: Info) -> None:
    snap = info()
    a = snap["allocator"]
    assert a["name"] == "glibc" and a["source"] == "linked"
    assert a["confirmed_by"] == "gnu_get_libc_version" and a["warnings"] == []
    assert snap["jemalloc"] is None
    assert snap["glibc"]["in_use_bytes"] > 0 and snap["glibc"]["arenas"] >= 1
    assert snap["memory"]["rss_bytes"] > 0


def test_jemalloc_preloaded_reports_version_options_and_live_stats(
    info: Info, jemalloc: str
) -> None:
    conf = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:100,retain:false,narenas:2"
    snap = info(LD_PRELOAD=jemalloc, MALLOC_CONF=conf)
    a = snap["allocator"]
    assert (a["name"], a["version"], a["source"]) == ("jemalloc", JEMALLOC_VERSION, "LD_PRELOAD")
    assert a["path"] == jemalloc and a["confirmed_by"] == "mallctl"
    je = snap["jemalloc"]
    opts = je["options"]
    assert opts["narenas"] == 2 and opts["dirty_decay_ms"] == 100 and opts["retain"] is False
    assert opts["background_thread"] is True and je["stats"]["background_thread"] is True
    assert all(k["in_effect"] for k in je["malloc_conf"])
    stats = je["stats"]
    assert 0 < stats["allocated"] <= stats["active"] <= stats["resident"] <= stats["mapped"]
    assert snap["glibc"] is None  # glibc's counters are never shown as jemalloc's heap


def test_misspelt_and_invalid_malloc_conf_show_as_not_in_effect(info: Info, jemalloc: str) -> None:
    snap = info(LD_PRELOAD=jemalloc, MALLOC_CONF="dirty_decy_ms:100,muzzy_decay_ms:abc,narenas:3")
    keys = {k["key"]: k for k in snap["jemalloc"]["malloc_conf"]}
    assert not keys["dirty_decy_ms"]["in_effect"]
    assert "has no option 'dirty_decy_ms' (misspelt" in keys["dirty_decy_ms"]["reason"]
    assert keys["dirty_decy_ms"]["reason"].startswith("<jemalloc>: Invalid conf pair: dirty_de")
    assert not keys["muzzy_decay_ms"]["in_effect"]
    # jemalloc's own words, collected from a child that re-ran its parse (issue 9 item 8)
    assert keys["muzzy_decay_ms"]["reason"] == "<jemalloc>: Invalid conf value: muzzy_decay_ms:abc"
    assert keys["narenas"]["in_effect"] and snap["jemalloc"]["options"]["narenas"] == 3
    assert "Invalid conf pair: dirty_decy_ms:100" in snap["_stderr"]  # jemalloc said so too
    assert snap["jemalloc"]["conf_messages"] == [
        "<jemalloc>: Invalid conf pair: dirty_decy_ms:100",
        "<jemalloc>: Invalid conf value: muzzy_decay_ms:abc",
    ]


def test_tcmalloc(info: Info, tcmalloc: str) -> None:
    a = info(LD_PRELOAD=tcmalloc)["allocator"]
    assert (a["name"], a["source"], a["confirmed_by"]) == ("tcmalloc", "LD_PRELOAD", "tc_version")
    assert a["version"].startswith("2.")


def test_mimalloc(info: Info, mimalloc: str) -> None:
    a = info(LD_PRELOAD=mimalloc)["allocator"]
    assert (a["name"], a["source"], a["confirmed_by"]) == ("mimalloc", "LD_PRELOAD", "mi_version")
    assert a["version"].startswith("2.")
