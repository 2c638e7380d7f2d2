"""inspect's pure logic against a fake /proc tree: stat, maps, heaps, cgroups, bad pids."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from allocscope.inspect import (
    NoSuchProcess,
    NotInspectable,
    cgroup,
    heaps,
    inspect_process,
    loader,
    process_tree,
    procinfo,
)
from allocscope.inspect.errors import InspectError

MiB = 2**20
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
DOCKER_ID = "3f" * 32


def stat_line(pid: int, comm: str = "app", state: str = "S", ppid: int = 1, flags: int = 0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags ... starttime is field 22
    rest = [state, str(ppid), "0", "0", "0", "0", str(flags)] + ["0"] * 12 + ["4242"] + ["0"] * 30
    return f"{pid} ({comm}) {' '.join(rest)}\n"


def fake_process(root: Path, pid: int, **kw: object) -> Path:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(stat_line(pid, **kw))  # type: ignore[arg-type]
    return d


def test_parse_stat_with_spaces_and_parentheses_in_comm() -> None:
    s = procinfo.parse_stat(stat_line(7, comm="we (ird) name", state="R", ppid=3, flags=0x200000))
    assert (s.command, s.state, s.ppid, s.start_time) == ("we (ird) name", "R", 3, 4242)
    assert s.kernel_thread


def test_glibc_heaps_counts_64mib_aligned_arena_heaps_only() -> None:
    base = 0x7F0000000000  # 64 MiB-aligned
    maps = procinfo.parse_maps(
        f"55d0c0000000-55d0c0100000 rw-p 00000000 00:00 0 [heap]\n"
        f"{base:x}-{base + 3 * MiB:x} rw-p 00000000 00:00 0\n"
        f"{base + 3 * MiB:x}-{base + 64 * MiB:x} ---p 00000000 00:00 0\n"
        f"{base + 64 * MiB:x}-{base + 128 * MiB:x} rw-p 00000000 00:00 0\n"  # a full heap
        # a thread stack: guard page first, then read-write: not a heap
        f"{base + 128 * MiB:x}-{base + 128 * MiB + 4096:x} ---p 00000000 00:00 0\n"
        f"{base + 128 * MiB + 4096:x}-{base + 136 * MiB:x} rw-p 00000000 00:00 0\n"
    )
    found = heaps.glibc_heaps(maps)
    assert found == heaps.GlibcHeaps(main_heap_bytes=MiB, arena_heaps=2, arena_heap_bytes=67 * MiB)


@pytest.mark.parametrize(
    ("text", "path", "container_id"),
    [
        (f"0::/system.slice/docker-{DOCKER_ID}.scope\n", f"/system.slice/docker-{DOCKER_ID}.scope",
         DOCKER_ID),
        (f"4:memory:/docker/{DOCKER_ID}\n0::/\n", f"/docker/{DOCKER_ID}", DOCKER_ID),
        (f"0::/kubepods/pod1/cri-containerd-{DOCKER_ID}.scope\n", None, DOCKER_ID),
        ("0::/user.slice/user-1000.slice/session-2.scope\n", None, None),
    ],
)  # fmt: skip
def test_container_ids(
    tmp_path: Path, text: str, path: str | None, container_id: str | None
) -> None:
    box, problems = cgroup.container(text, str(tmp_path))
    assert box.container_id == container_id
    if path is not None:
        assert box.cgroup == path
    assert problems and "cannot read" in problems[0]  # no cgroup files in the fake root


def test_container_memory_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "v2" / "app.slice"
    v2.mkdir(parents=True)
    (v2 / "memory.current").write_text("1048576\n")
    (v2 / "memory.max").write_text("max\n")
    box, problems = cgroup.container("0::/app.slice\n", str(tmp_path / "v2"))
    assert (box.memory_current_bytes, box.memory_max_bytes, problems) == (MiB, None, [])
    v1 = tmp_path / "v1" / "memory" / "docker" / DOCKER_ID
    v1.mkdir(parents=True)
    (v1 / "memory.usage_in_bytes").write_text("2097152\n")
    (v1 / "memory.limit_in_bytes").write_text("536870912\n")
    box, problems = cgroup.container(f"4:memory:/docker/{DOCKER_ID}\n", str(tmp_path / "v1"))
    assert (box.memory_current_bytes, box.memory_max_bytes, problems) == (2 * MiB, 512 * MiB, [])


def test_expand_lib_and_platform() -> None:
    assert loader.expand("/usr/$LIB/libjemalloc.so.2", "x86_64")[0] == (
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    )
    assert loader.expand("/opt/${PLATFORM}/${LIB}/x.so", "aarch64")[1] == "/opt/aarch64/lib64/x.so"
    assert loader.expand("/plain.so", "x86_64") == ["/plain.so"]


def test_bad_pids(tmp_path: Path) -> None:
    fake_process(tmp_path, 2, comm="kthreadd", flags=0x00200000)
    fake_process(tmp_path, 66, comm="defunct", state="Z")
    with pytest.raises(NoSuchProcess, match="no such process: 5"):
        inspect_process(5, str(tmp_path))
    with pytest.raises(InspectError, match="not a process id: 0"):
        inspect_process(0, str(tmp_path))
    with pytest.raises(NotInspectable, match="kernel thread"):
        inspect_process(2, str(tmp_path))
    with pytest.raises(NotInspectable, match="zombie"):
        inspect_process(66, str(tmp_path))


def test_exited_while_reading(tmp_path: Path) -> None:
    d = fake_process(tmp_path, 9)
    proc = procinfo.Proc(9, str(tmp_path))
    shutil.rmtree(d)
    with pytest.raises(NotInspectable, match="process 9 exited while reading"):
        proc.text("maps")
    fake_process(tmp_path, 9, comm="other")  # the pid reused: another start time
    (d / "stat").write_text(stat_line(9).replace(" 4242 ", " 4343 "))
    (d / "maps").write_text("")
    with pytest.raises(NotInspectable, match="exited while reading"):
        proc.check_alive()


def test_a_whole_fake_process(tmp_path: Path) -> None:
    """A fake tree whose root is the host's: the loader reads the real libc through it."""
    d = fake_process(tmp_path, 40)
    fake_process(tmp_path, 41, ppid=40)
    fake_process(tmp_path, 42, ppid=41)
    fake_process(tmp_path, 43, ppid=1)
    os.symlink("/", d / "root")
    os.symlink("/usr/bin/env", d / "exe")
    (d / "cmdline").write_bytes(b"app\0--serve\0")
    (d / "environ").write_bytes(b"LD_PRELOAD=/nope/libjemalloc.so.2\0MALLOC_ARENA_MAX=2\0")
    ino = os.stat(LIBC).st_ino
    (d / "maps").write_text(
        f"7f0000000000-7f0000100000 r-xp 00000000 08:01 {ino} {LIBC}\n"
        "7f0000200000-7f0000300000 rw-p 00000000 00:00 0 [heap]\n"
    )
    (d / "status").write_text("Name:\tapp\nVmHWM:\t 2048 kB\nVmRSS:\t 1024 kB\nRssAnon:\t 512 kB\n")
    (d / "smaps_rollup").write_text("Pss: 800 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 600 kB\n"
                                    "AnonHugePages: 0 kB\n")  # fmt: skip
    # pagemap: 8 bytes per page; bit 63 marks a resident page. 64 of the heap's 256 pages.
    heap_first_page = 0x7F0000200000 // 4096
    entries = [(1 << 63) if i % 4 == 0 else 0 for i in range(256)]
    with open(d / "pagemap", "wb") as f:
        f.seek(heap_first_page * 8)
        f.write(b"".join(e.to_bytes(8, "little") for e in entries))
    (d / "cgroup").write_text(f"0::/system.slice/docker-{DOCKER_ID}.scope\n")
    report = inspect_process(40, str(tmp_path), cgroup_root=str(tmp_path / "no-cgroupfs"))
    a = report.allocator
    assert a is not None and (a.name, a.source, a.path) == ("glibc", "linked", LIBC)
    assert a.preload[0].verdict == "not loaded: no such file"
    assert report.cmdline == ("app", "--serve")
    assert report.memory.process is not None and report.memory.process.uss_bytes == 600 * 1024
    assert report.memory.glibc == heaps.GlibcHeaps(MiB, 0, 0, 256 * 1024, 0)
    assert report.memory.glibc_fragmentation_estimate == 0.5  # 256 of 512 kB anon resident
    assert report.jemalloc_background_threads is None  # glibc serves malloc
    assert report.kubernetes is None  # a Docker container off Kubernetes
    assert report.container is not None and report.container.container_id == DOCKER_ID
    assert {u.part for u in report.unknowns} == {"container"}  # the cgroup files are absent
    assert process_tree(40, str(tmp_path)) == [40, 41, 42]


def test_a_refused_read_says_what_would_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root with CAP_SYS_PTRACE can still be refused (pid 1 of this microVM is): the reason
    must not then tell root to become root."""
    from allocscope.inspect import report

    refused = PermissionError(13, "Permission denied")
    monkeypatch.setattr(report, "can_ptrace_others", lambda: False)
    assert "needs root or CAP_SYS_PTRACE" in report._why(refused)
    monkeypatch.setattr(report, "can_ptrace_others", lambda: True)
    assert report._why(refused).startswith("permission denied even with CAP_SYS_PTRACE")


def test_an_unidentified_allocator_is_not_named_unknown_in_a_sentence() -> None:
    from allocscope.inspect.report import _counters_note

    note = _counters_note("unknown")
    assert "unknown's" not in note and note.startswith("no allocator was identified")
    assert _counters_note("mimalloc") == (
        "mimalloc's own counters cannot be read from outside the process"
    )


def test_jemalloc_background_threads_are_counted_by_thread_name(tmp_path: Path) -> None:
    d = fake_process(tmp_path, 50)
    for tid, comm in ((50, "python"), (51, "jemalloc_bg_thd"), (52, "jemalloc_bg_thd"), (53, "w")):
        (d / "task" / str(tid)).mkdir(parents=True)
        (d / "task" / str(tid) / "comm").write_text(comm + "\n")
    names = procinfo.Proc(50, str(tmp_path)).thread_names()
    assert heaps.jemalloc_background_threads(names) == 2
    assert heaps.jemalloc_background_threads(["python\n", "jemalloc_bg_thd_x\n"]) == 0
