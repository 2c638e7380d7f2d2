from __future__ import annotations

from allocscope.probe.jemalloc import _same, parse_conf


def test_parse_conf_pairs() -> None:
    assert parse_conf("background_thread:true, narenas:2,,retain") == [
        ("background_thread", "true"),
        ("narenas", "2"),
        ("retain", ""),
    ]
    assert parse_conf(None) == []


def test_values_compare_by_type() -> None:
    assert _same("true", True) and _same("TRUE", True) and not _same("1", True)
    assert _same("100", 100) and not _same("abc", 100) and not _same("10", 100)
    assert _same("auto", "auto") and not _same("always", "auto")
