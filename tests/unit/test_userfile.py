"""Every reader of a user-given file: regular files only, bounded, never blocking."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from allocscope import exitcodes, userfile
from allocscope.bench import results, variants
from allocscope.bench.kinds.process import load
from allocscope.tune import space
from tests.conftest import run_allocscope


@pytest.fixture
def fifo(tmp_path: Path) -> str:
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    return path  # no writer: a blocking open() would wait forever


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/dev/zero", "a character device"),
        ("/dev/full", "a character device"),
        ("/", "a directory"),
    ],
)
def test_devices_and_directories_are_refused(path: str, kind: str) -> None:
    with pytest.raises(userfile.UserFileError, match=f"^{path}: {kind}, not a regular file$"):
        userfile.read_bytes(path, userfile.MIB)


def test_a_fifo_without_writer_is_refused_at_once(fifo: str) -> None:
    with pytest.raises(userfile.UserFileError, match="a FIFO, not a regular file"):
        userfile.read_text(fifo, userfile.MIB, "--requests x")


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        with pytest.raises(userfile.UserFileError, match="a socket, not a regular file"):
            userfile.read_bytes(path, userfile.MIB)


def test_a_file_past_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(5 * userfile.MIB)  # sparse: costs no disk
    with pytest.raises(userfile.UserFileError, match=r"5\.0 MiB, past the limit of 1\.0 MiB"):
        userfile.read_bytes(str(path), userfile.MIB)
    assert len(userfile.read_bytes(str(path), 5 * userfile.MIB)) == 5 * userfile.MIB


def test_missing_unreadable_and_binary(tmp_path: Path) -> None:
    with pytest.raises(userfile.UserFileError, match="No such file or directory"):
        userfile.read_bytes(str(tmp_path / "nope"), 10)
    with pytest.raises(userfile.UserFileError, match="embedded null byte"):
        userfile.read_bytes("a\0b", 10)
    binary = tmp_path / "bin"
    binary.write_bytes(b"ok\xff\xfe")
    with pytest.raises(userfile.UserFileError, match=r"not UTF-8 text \(byte 2\)"):
        userfile.read_text(str(binary), 10)
    assert userfile.read_bytes(str(binary), 4) == b"ok\xff\xfe"


def test_every_reader_goes_through_it(fifo: str, tmp_path: Path) -> None:
    with pytest.raises(load.LoadError, match=f"^--requests {fifo}: a FIFO"):
        load.read_requests(fifo)
    with pytest.raises(results.ResultsError, match="a character device"):
        results.load("/dev/zero")
    with pytest.raises(variants.VariantError, match="a FIFO"):
        variants.load_toml(fifo)
    with pytest.raises(space.SpaceError, match="a character device"):
        space.load("/dev/zero")
    binary = tmp_path / "r.jsonl"
    binary.write_bytes(b"\x00\x01\xff")
    with pytest.raises(load.LoadError, match="not UTF-8 text"):
        load.read_requests(str(binary))
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as f:
        f.truncate(userfile.REQUESTS_LIMIT + 1)
    with pytest.raises(load.LoadError, match=r"past the limit of 64\.0 MiB"):
        load.read_requests(str(huge))


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/full", "fifo", "dir"])
def test_report_refuses_endless_inputs_at_once(target: str, fifo: str, tmp_path: Path) -> None:
    path = {"fifo": fifo, "dir": str(tmp_path)}.get(target, target)
    proc = run_allocscope("report", path, timeout=30)  # it once never returned (FIFO)
    assert proc.returncode == exitcodes.BAD_INPUT
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_replacing_writes_whole_files_or_none(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), userfile.replacing(str(path)) as f:
        f.write("half of a new one")
        raise RuntimeError("interrupted mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]
    with userfile.replacing(str(path)) as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["results.json"]
    missing = tmp_path / "gone" / "r.json"
    no_dir = r"cannot write .*: No such file or directory"
    with pytest.raises(userfile.UserFileError, match=no_dir), userfile.replacing(str(missing)):
        pass
