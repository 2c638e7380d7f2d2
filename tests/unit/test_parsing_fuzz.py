"""Fuzzing the readers of MALLOC_CONF and LD_PRELOAD (issue 9, "Everywhere"): any text
gives an answer, never an exception, and the answer accounts for every character."""

from __future__ import annotations

import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from allocscope.probe import allocator
from allocscope.probe.jemalloc import read_conf

KEY = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12)
VALUE = st.text(st.characters(blacklist_characters=",\x00"), max_size=12)


def rebuilt(conf: str) -> str:
    r = read_conf(conf)
    text = ",".join(f"{k}:{v}" for k, v in r.pairs)
    return f"{text},{r.unread}" if r.pairs and r.unread else text or r.unread


@given(st.text(max_size=60))
def test_read_conf_accounts_for_every_character(conf: str) -> None:
    r = read_conf(conf)
    assert conf.startswith(rebuilt(conf))
    assert conf[len(rebuilt(conf)) :] in ("", ",")  # only a trailing comma is dropped
    assert (r.problem is None) == (not r.unread and not conf.endswith(","))
    for key, value in r.pairs:
        assert set(key) <= set(string.ascii_letters + string.digits + "_")
        assert "," not in value


@given(st.lists(st.tuples(KEY, VALUE), max_size=6))
def test_well_formed_conf_reads_back(pairs: list[tuple[str, str]]) -> None:
    conf = ",".join(f"{k}:{v}" for k, v in pairs)
    assert read_conf(conf).pairs == tuple(pairs)
    assert read_conf(conf).problem is None


@given(st.text(max_size=80))
def test_split_preload_never_keeps_a_separator(value: str) -> None:
    entries = allocator.split_preload(value)
    assert all(e and " " not in e and ":" not in e for e in entries)
    assert "".join(entries) == "".join(c for c in value if c not in " :")


@given(st.text(max_size=60))  # lone surrogates too: os.environ decodes bad bytes to them
@example("/a\x00b:/tmp/\udcff.so")
@settings(max_examples=200, deadline=None)
def test_examine_preload_answers_any_text(value: str) -> None:
    mapped = ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/lib/x86_64-linux-gnu/libc.so.6"]
    entries = allocator.examine_preload(value, mapped)
    assert [e.entry for e in entries] == allocator.split_preload(value)
    for e in entries:
        assert e.loaded or e.problem  # every entry not loaded says why
