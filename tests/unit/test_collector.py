"""AllocscopeCollector: labels, a fake /proc tree, and failures that never escape collect()."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from allocscope import this_process
from allocscope.prometheus import AllocscopeCollector
from tests.conftest import Families, families

STATUS = "Name:\tpython3\nVmHWM:\t   50000 kB\nVmRSS:\t   40000 kB\nRssAnon:\t   30000 kB\n"


# glibc's main arena: 1 GiB of [heap], 512 MiB of it resident (more than RssAnon above).
SMAPS = (
    "55d0c0000000-55d100000000 rw-p 00000000 00:00 0                          [heap]\n"
    "Size:            1048576 kB\nRss:              524288 kB\n"
)


def scrape(collector: AllocscopeCollector) -> Families:
    registry = CollectorRegistry()
    registry.register(collector)
    return families(generate_latest(registry).decode())


def errors(fams: Families) -> dict[str, float]:
    return {labels["part"]: v for labels, v in fams["allocscope_collector_errors"]}


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text(STATUS)
    (tmp_path / "self" / "smaps").write_text(SMAPS)
    return tmp_path


def test_every_series_names_this_pid_and_memory_comes_from_proc_root(fake_proc: Path) -> None:
    fams = scrape(AllocscopeCollector(proc_root=str(fake_proc), server=""))
    pid = str(os.getpid())
    assert all(labels["pid"] == pid for samples in fams.values() for labels, _ in samples)
    assert fams["allocscope_process_resident_memory_bytes"] == [({"pid": pid}, 40000 * 1024.0)]
    assert fams["allocscope_process_anonymous_memory_bytes"][0][1] == 30000 * 1024.0
    [(build, _)] = fams["allocscope_build_info"]
    assert build["server"] == ""  # no server it does not know
    assert set(errors(fams).values()) == {0.0}


def test_server_label_is_the_server_this_process_imported(fake_proc: Path) -> None:
    [(build, _)] = scrape(AllocscopeCollector(proc_root=str(fake_proc)))["allocscope_build_info"]
    assert build["server"] == this_process.server()
    assert "granian" not in build["server"]  # pytest imported no server


def test_unreadable_memory_is_a_missing_series_and_a_counted_error(tmp_path: Path) -> None:
    collector = AllocscopeCollector(proc_root=str(tmp_path))  # no status file
    first, second = scrape(collector), scrape(collector)
    assert "allocscope_process_resident_memory_bytes" not in second
    assert "allocscope_allocator_info" in second  # the other parts still answer
    assert errors(first)["memory"] == 1 and errors(second)["memory"] == 2
    assert errors(second)["allocator"] == 0  # the allocator's books are still read
    assert errors(second)["held"] == 2  # what it holds needs the anonymous RSS


def test_held_bytes_are_resident_arena_pages_minus_in_use(fake_proc: Path) -> None:
    """glibc: free_resident is the arenas' resident pages minus what mallinfo2 has in use,
    never mallinfo2's free books, and never more than the anonymous RSS."""
    from allocscope.probe import allocator, glibc

    if allocator.detect().name != "glibc":
        pytest.fail("this test runs under glibc (no allocator preloaded)")
    fams = scrape(AllocscopeCollector(proc_root=str(fake_proc), server=""))
    kinds = {labels["kind"]: v for labels, v in fams["allocscope_allocator_bytes"]}
    heap = glibc.heap()
    assert {"in_use", "free_resident", "returnable", "held", "free"} <= set(kinds)
    assert heap.in_use_bytes < 512 * 2**20 - 30000 * 1024  # so the cap is what decides
    assert kinds["free_resident"] == 30000 * 1024  # RssAnon of the fake tree, not 512 MiB
    assert kinds["held"] == kinds["in_use"] + kinds["free_resident"]


def test_facts_that_cannot_be_detected_leave_only_the_error_counter() -> None:
    def broken() -> this_process.ProcessFacts:
        raise OSError("cannot read /proc/self/maps")

    fams = scrape(AllocscopeCollector(current=broken))
    assert set(fams) == {"allocscope_collector_errors"}
    assert errors(fams)["facts"] == 1
