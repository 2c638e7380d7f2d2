"""inspect names the allocator of real processes: Ruby's Puma, Node.js, a static C program,
renamed and misnamed allocators, two allocators at once, gunicorn's workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from allocscope.inspect import inspect_process, process_tree
from tests.conftest import JEMALLOC_VERSION, TCMALLOC_VERSION, run_allocscope
from tests.integration.targets import free_port, running, serves

CONFIG_RU = 'run ->(env) { [200, {"content-type" => "text/plain"}, ["ok\\n"]] }\n'
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def maps_of(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def inspect_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_allocscope("inspect", *args)


@pytest.fixture
def config_ru(tmp_path: Path) -> str:
    path = tmp_path / "config.ru"
    path.write_text(CONFIG_RU)
    return str(path)


@pytest.mark.parametrize("preload", [False, True])
def test_puma_with_and_without_jemalloc(config_ru: str, jemalloc: str, preload: bool) -> None:
    port = free_port()
    argv = ["puma", "-w", "2", "-t", "1:1", "-b", f"tcp://127.0.0.1:{port}", config_ru]
    env = {"LD_PRELOAD": jemalloc} if preload else {}
    with running(argv, lambda p: serves(port) and len(process_tree(p.pid)) >= 3, **env) as puma:
        tree = process_tree(puma.pid)
        assert len(tree) >= 3, tree  # the master and its two workers
        for pid in tree:
            a = inspect_process(pid).allocator
            assert a is not None
            if preload:
                assert (a.name, a.source, a.version) == ("jemalloc", "LD_PRELOAD", JEMALLOC_VERSION)
                assert a.preload[0].verdict == "loaded: jemalloc, serves malloc"
            else:
                assert (a.name, a.source) == ("glibc", "linked")
            assert a.conflict is None
        assert serves(port)  # inspection touched nothing


def test_node_runs_on_glibc_and_on_preloaded_jemalloc(jemalloc: str) -> None:
    argv = ["node", "-e", "setInterval(() => {}, 1000)"]
    with running(argv) as node:
        report = inspect_process(node.pid)
        assert report.allocator is not None and report.allocator.name == "glibc"
        assert report.memory.glibc is not None and report.memory.glibc.main_heap_bytes >= 0
    with running(argv, LD_PRELOAD=jemalloc) as node:
        a = inspect_process(node.pid).allocator
        assert a is not None and (a.name, a.source) == ("jemalloc", "LD_PRELOAD")


def test_c_program_with_jemalloc_linked_statically(tmp_path: Path) -> None:
    source = tmp_path / "static.c"
    source.write_text(
        "#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n"
        "int main(void) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); pause();"
        " return p[0]; }\n"
    )
    binary = tmp_path / "static-jemalloc"
    subprocess.run(
        ["gcc", "-O1", "-o", str(binary), str(source), "-Wl,-Bstatic", "-ljemalloc",
         "-Wl,-Bdynamic", "-lpthread", "-ldl", "-lm", "-lstdc++"],
        check=True,
    )  # fmt: skip
    stripped = tmp_path / "static-jemalloc-stripped"
    subprocess.run(["strip", "-o", str(stripped), str(binary)], check=True)
    for exe, marker in ((binary, "mallctl"), (stripped, "version string")):
        with running([str(exe)]) as proc:
            a = inspect_process(proc.pid).allocator
            assert a is not None
            assert (a.name, a.source, a.path, a.version) == (
                "jemalloc",
                "static",
                str(exe),
                JEMALLOC_VERSION,
            )
            assert a.marker == marker
            assert a.conflict is None  # glibc is mapped too, but glibc is never the conflict


def test_c_program_linked_statically_against_glibc_is_named_glibc(tmp_path: Path) -> None:
    source = tmp_path / "static.c"
    source.write_text(
        "#include <stdlib.h>\n#include <unistd.h>\n"
        "int main(void) { char *p = malloc(100); pause(); free(p); return 0; }\n"
    )
    binary = tmp_path / "static-glibc"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(binary), str(source)], check=True)
    stripped = tmp_path / "static-glibc-stripped"
    subprocess.run(["strip", "-o", str(stripped), str(binary)], check=True)
    for exe, marker in ((binary, "__libc_malloc"), (stripped, "glibc malloc's messages")):
        with running([str(exe)]) as proc:
            a = inspect_process(proc.pid).allocator
            assert a is not None
            assert (a.name, a.source, a.path, a.marker) == ("glibc", "static", str(exe), marker)
            assert a.label == "glibc (static)"  # no "unknown", no "[unconfirmed]"


def test_c_program_linked_against_jemalloc(tmp_path: Path) -> None:
    """Linked (DT_NEEDED, as Ruby --with-jemalloc does): jemalloc serves, source linked."""
    source = tmp_path / "linked.c"
    source.write_text(
        "#include <stdlib.h>\n#include <unistd.h>\n"
        "int main(void) { void *p = malloc(64); pause(); free(p); return 0; }\n"
    )
    binary = tmp_path / "linked-jemalloc"
    subprocess.run(["gcc", "-o", str(binary), str(source), "-ljemalloc"], check=True)
    with running([str(binary)]) as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None and (a.name, a.source, a.version) == (
            "jemalloc",
            "linked",
            JEMALLOC_VERSION,
        )
        assert a.path is not None and a.path.endswith("libjemalloc.so.2")
        assert a.conflict is None


def test_a_dlopened_allocator_does_not_serve(tcmalloc: str) -> None:
    """dlopen (RTLD_LOCAL) maps it outside the global scope: glibc still serves malloc."""
    code = f"import ctypes, os, time; ctypes.CDLL({tcmalloc!r}, os.RTLD_LOCAL); time.sleep(60)"
    with running([sys.executable, "-c", code], lambda p: "tcmalloc" in maps_of(p.pid)) as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None and (a.name, a.source) == ("glibc", "linked")
        assert [m.name for m in a.mapped if m.name != "glibc"] == ["tcmalloc"]
        assert any(
            w.endswith("is mapped but does not serve malloc (glibc does)") for w in a.warnings
        )


def test_renamed_jemalloc_and_tcmalloc_named_libjemalloc(disguised: tuple[str, str]) -> None:
    renamed, liar = disguised
    with running(SLEEPER, LD_PRELOAD=renamed) as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None and (a.name, a.path) == ("jemalloc", renamed)
    with running(SLEEPER, LD_PRELOAD=liar) as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None and (a.name, a.version, a.path) == ("tcmalloc", TCMALLOC_VERSION, liar)


def test_two_allocators_preloaded_is_a_failure(jemalloc: str, tcmalloc: str) -> None:
    with running(SLEEPER, LD_PRELOAD=f"{jemalloc}:{tcmalloc}") as proc:
        report = inspect_process(proc.pid)
        assert report.failed and report.allocator is not None
        assert report.allocator.name == "jemalloc"  # first in LD_PRELOAD wins
        verdicts = [p.verdict for p in report.allocator.preload]
        assert verdicts == [
            "loaded: jemalloc, serves malloc",
            "loaded: tcmalloc, mapped but does not serve malloc (jemalloc does)",
        ]
        cli = inspect_cli(str(proc.pid))
        assert cli.returncode == 1, cli.stderr
        assert "FAIL        2 allocators mapped at once: jemalloc (" in cli.stdout


def test_preload_entries_explained(tmp_path: Path, jemalloc: str) -> None:
    text = tmp_path / "libnot.so"
    text.write_text("not ELF" * 20)
    arm = tmp_path / "libarm.so"  # a 64-bit little-endian ELF header for aarch64 (183)
    arm.write_bytes(
        b"\x7fELF\x02\x01\x01"
        + b"\x00" * 9
        + b"\x03\x00"
        + (183).to_bytes(2, "little")
        + b"\x00" * 64
    )
    libz = "/lib/x86_64-linux-gnu/libz.so.1"
    lib_expr = jemalloc.replace("lib/x86_64-linux-gnu", "$LIB")
    preload = f"/nope/libtcmalloc.so.4 {text} {arm} {libz} {lib_expr}"
    with running(SLEEPER, LD_PRELOAD=preload) as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None
        got = {p.entry: p.verdict for p in a.preload}
        assert got == {
            "/nope/libtcmalloc.so.4": "not loaded: no such file",
            str(text): "not loaded: not an ELF file",
            str(arm): "not loaded: wrong architecture: 64-bit aarch64, the executable is "
            "64-bit x86_64",
            libz: "loaded: not a memory allocator",
            lib_expr: "loaded: jemalloc, serves malloc",
        }
        assert a.name == "jemalloc" and a.preload[4].expanded == jemalloc


def test_bare_and_relative_preload_entries(tmp_path: Path, tcmalloc: str) -> None:
    """Bare names are found on the search path, relative paths in the process's cwd."""
    preload = f"./missing.so {Path(tcmalloc).name} libnope.so"
    with running(SLEEPER, cwd=str(tmp_path), LD_PRELOAD=preload) as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None and a.name == "tcmalloc"
        assert [p.verdict for p in a.preload] == [
            "not loaded: no such file",
            "loaded: tcmalloc, serves malloc",
            "not loaded: not found in the library search path",
        ]
    (tmp_path / "missing.so").write_text("it exists, but it is not ELF")
    with running(SLEEPER, cwd=str(tmp_path), LD_PRELOAD="./missing.so") as proc:
        a = inspect_process(proc.pid).allocator
        assert a is not None and a.preload[0].verdict == "not loaded: not an ELF file"


def test_gunicorn_workers_each_named(tmp_path: Path, jemalloc: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", str(tmp_path), "app:app"]  # fmt: skip
    ready = lambda p: serves(port) and len(process_tree(p.pid)) == 3  # noqa: E731
    with running(argv, ready, LD_PRELOAD=jemalloc) as master:
        tree = process_tree(master.pid)
        assert len(tree) == 3, tree
        names = {pid: inspect_process(pid).allocator for pid in tree}
        assert all(a is not None and a.name == "jemalloc" for a in names.values())
        cli = inspect_cli("--json", *map(str, tree))
        assert cli.returncode == 0, cli.stderr
        doc = json.loads(cli.stdout)
        assert doc["schema"] == "allocscope.inspect/1"
        assert [p["pid"] for p in doc["processes"]] == tree
        assert serves(port)


def test_uvicorn_workers_each_named(tmp_path: Path, jemalloc: str) -> None:
    (tmp_path / "asgi.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
    )
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(port), "--app-dir", str(tmp_path), "asgi:app"]  # fmt: skip
    ready = lambda p: serves(port) and len(process_tree(p.pid)) >= 3  # noqa: E731
    with running(argv, ready, LD_PRELOAD=jemalloc) as master:
        tree = process_tree(master.pid)
        assert len(tree) >= 3, tree  # the supervisor and two spawned workers (and a tracker)
        for pid in tree:
            a = inspect_process(pid).allocator
            assert a is not None and (a.name, a.source) == ("jemalloc", "LD_PRELOAD"), pid
        assert serves(port)
