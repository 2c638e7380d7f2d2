from __future__ import annotations

from allocscope.probe.jemalloc import ConfRead, _same, parse_conf, read_conf


def test_parse_conf_pairs() -> None:
    assert parse_conf("background_thread:true,narenas:2,retain:") == [
        ("background_thread", "true"),
        ("narenas", "2"),
        ("retain", ""),
    ]
    assert parse_conf(None) == []


def test_a_space_after_a_comma_stops_jemalloc_there() -> None:
    """Issue 9 item 8: 'narenas' was blamed as 'requested 2, in effect 8'; jemalloc never
    read it: the space is not a key character, and parsing stops at it."""
    assert read_conf("background_thread:true, narenas:2") == ConfRead(
        (("background_thread", "true"),), " narenas:2", "Malformed conf string"
    )
    assert read_conf("background_thread:true, narenas:2").unread_pairs() == [("narenas", "2")]


def test_jemalloc_complaints_are_named_as_it_names_them() -> None:
    assert read_conf("narenas").problem == "Conf string ends with key"
    ends_with_comma = ConfRead((("narenas", "2"),), "", "Conf string ends with comma")
    assert read_conf("narenas:2,") == ends_with_comma
    assert read_conf("narenas:2,,x:1").unread == ",x:1"
    assert read_conf("narenas:1:2").pairs == (("narenas", "1:2"),)  # a value runs to ','


def test_values_compare_by_type() -> None:
    assert _same("true", True) and _same("TRUE", True) and not _same("1", True)
    assert _same("100", 100) and not _same("abc", 100) and not _same("10", 100)
    assert _same("auto", "auto") and not _same("always", "auto")
