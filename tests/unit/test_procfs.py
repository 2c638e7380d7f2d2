"""Pure /proc parsing against a fake tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocscope.probe import memory, procfs
from allocscope.probe.errors import ProbeError

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/python3.11
7f0000000000-7f0000100000 r-xp 00000000 08:01 456 /usr/lib/libjemalloc.so.2
7f0000100000-7f0000200000 r--p 00100000 08:01 456 /usr/lib/libjemalloc.so.2
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
7f0000300000-7f0000400000 r-xp 00000000 08:01 789 /opt/my libs/libfoo.so (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
"""

STATUS = """\
Name:\tpython3
VmHWM:\t   50000 kB
VmRSS:\t   40000 kB
RssAnon:\t   30000 kB
RssFile:\t   10000 kB
VmSwap:\t       0 kB
Threads:\t5
"""

ROLLUP = """\
7f0000000000-7ffd00021000 ---p 00000000 00:00 0 [rollup]
Rss:               40000 kB
Pss:               35000 kB
Private_Clean:      1000 kB
Private_Dirty:     29000 kB
"""


def fake_proc(tmp_path: Path, pid: str = "self", **files: str) -> str:
    d = tmp_path / pid
    d.mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return str(tmp_path)


def test_mapped_files_are_distinct_paths_in_order(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, maps=MAPS)
    assert procfs.mapped_files(root) == [
        "/usr/bin/python3.11",
        "/usr/lib/libjemalloc.so.2",
        "/opt/my libs/libfoo.so",
    ]


def test_unreadable_proc_is_a_probe_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"cannot read .*/self/maps"):
        procfs.mapped_files(str(tmp_path))


def test_memory_reads_status_and_rollup(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, pid="42", status=STATUS, smaps_rollup=ROLLUP)
    m = memory.read(root, 42)
    assert m.rss_bytes == 40000 * 1024
    assert m.peak_rss_bytes == 50000 * 1024
    assert m.anon_rss_bytes == 30000 * 1024
    assert m.pss_bytes == 35000 * 1024
    assert m.uss_bytes == 30000 * 1024


def test_memory_without_rollup_leaves_pss_unknown(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, status=STATUS)
    m = memory.read(root)
    assert m.rss_bytes == 40000 * 1024
    assert m.pss_bytes is None and m.uss_bytes is None


def test_status_without_rss_is_refused(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, status="Name:\tkthread\n")
    with pytest.raises(ProbeError, match="no VmRSS"):
        memory.read(root)
