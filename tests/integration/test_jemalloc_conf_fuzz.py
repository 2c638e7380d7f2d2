"""Our reading of MALLOC_CONF against the real jemalloc's (issue 9 item 8): for generated
conf strings, jemalloc's own complaints (collected from a child, as verify does) match
where read_conf says jemalloc stops, and every pair jemalloc names is one we read."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from allocscope.probe.jemalloc import JEMALLOC_SAYS, conf_messages, read_conf
from tests.conftest import allocator_path, child_env

STOPS = ("Malformed conf string", "Conf string ends with key", "Conf string ends with comma")
# Real keys and junk; never abort_conf or stats_print (they abort or print at exit).
PIECES = st.sampled_from(
    ["narenas", "tcache", "retain", "dirty_decay_ms", "bogus", "x", ":", ",", " ", "-", "1",
     "true", "2", "_", "maybe", "1:2"]
)  # fmt: skip
CONF = st.lists(PIECES, max_size=8).map("".join)


@given(CONF)
@example("background_thread:true, narenas:2")
@example("narenas:2,bogus:3,tcache:maybe")
@example("1:2 ")  # found here: a trailing space is part of the value jemalloc quotes
@settings(max_examples=25, deadline=None, derandomize=True)  # a child each: same cases in CI
def test_read_conf_agrees_with_jemalloc(conf: str) -> None:
    said = conf_messages(child_env(LD_PRELOAD=allocator_path("jemalloc"), MALLOC_CONF=conf))
    r = read_conf(conf)
    for stop in STOPS:
        assert (JEMALLOC_SAYS + stop in said) == (r.problem == stop), (conf, r, said)
    for m in said:
        named = re.fullmatch(r"<jemalloc>: Invalid conf (?:pair|value): (\w*):(.*)", m)
        if named:
            assert (named.group(1), named.group(2)) in r.pairs, (conf, r, said)
