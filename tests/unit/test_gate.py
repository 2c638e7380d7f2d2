"""The launcher's gate, pure parts: the command line, app targets, bind addresses, commands."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from allocscope import exitcodes
from allocscope.service import gate, launch


@pytest.mark.parametrize(
    ("argv", "flags", "command"),
    [
        ([], [], []),
        (["--port", "9000"], ["--port", "9000"], []),
        (["gunicorn", "app:app"], [], ["gunicorn", "app:app"]),
        (["--vendor-root", "/v", "uvicorn", "m:a"], ["--vendor-root", "/v"], ["uvicorn", "m:a"]),
        (["--", "--odd-name", "x"], [], ["--odd-name", "x"]),
        (["--vendor-root", "/v", "--", "gunicorn"], ["--vendor-root", "/v"], ["gunicorn"]),
    ],
)
def test_split_command(argv: list[str], flags: list[str], command: list[str]) -> None:
    assert launch.split_command(argv) == (flags, command)


@pytest.mark.parametrize(
    ("args", "target"),
    [
        (["-c", "python:allocscope.gunicorn_conf", "app:app"], "app:app"),
        (["--config", "python:x.y", "-w", "2", "pkg.web:create_app()"], "pkg.web:create_app()"),
        (["--host", "127.0.0.1", "--port", "8000", "main:app"], "main:app"),
        (["-b", "localhost:8000", "--workers", "2"], None),  # 8000 is not a name
        (["--bind=unix:/tmp/s", "m.n:o.p"], "m.n:o.p"),
        (["-k", "uvicorn.workers.UvicornWorker"], None),
    ],
)
def test_app_target(args: list[str], target: str | None) -> None:
    assert gate.app_target(args) == target


@pytest.mark.parametrize(
    ("text", "bind"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:9001", ("::1", 9001)),
        ("0.0.0.0", ("0.0.0.0", 8000)),
        ("unix:/tmp/sock", None),
        ("fd://3", None),
    ],
)
def test_parse_bind(text: str, bind: tuple[str, int] | None) -> None:
    assert gate.parse_bind(text, 8000) == bind


@pytest.mark.parametrize("text", ["127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_bind_is_a_usage_error(text: str) -> None:
    with pytest.raises(gate.GateError) as caught:
        gate.parse_bind(text, 8000)
    assert caught.value.code == exitcodes.USAGE


def test_bind_targets_of_known_servers() -> None:
    targets = gate.bind_targets
    assert targets("gunicorn", ["app:app"], {}) == [("127.0.0.1", 8000)]
    assert targets("gunicorn", ["app:app"], {"PORT": "9000"}) == [("0.0.0.0", 9000)]
    assert targets("gunicorn", ["-b", "127.0.0.1:1", "--bind=[::1]:2", "a:b"], {}) == [
        ("127.0.0.1", 1),
        ("::1", 2),
    ]
    assert targets("gunicorn", [], {"GUNICORN_CMD_ARGS": "--bind 127.0.0.1:7"}) == [
        ("127.0.0.1", 7)
    ]
    # Our settings module sets no bind; a user's may: then the address is unknown.
    assert targets("gunicorn", ["-c", "python:allocscope.gunicorn_conf"], {}) == [
        ("127.0.0.1", 8000)
    ]
    assert targets("gunicorn", ["-c", "gunicorn.conf.py", "a:b"], {}) is None
    assert targets("gunicorn", ["-b", "unix:/run/s", "a:b"], {}) is None
    assert targets("uvicorn", ["--port", "9", "a:b"], {}) == [("127.0.0.1", 9)]
    assert targets("uvicorn", ["a:b"], {"UVICORN_HOST": "::1"}) == [("::1", 8000)]
    assert targets("granian", ["--host", "0.0.0.0", "a:b"], {"GRANIAN_PORT": "81"}) == [
        ("0.0.0.0", 81)
    ]
    assert targets("uvicorn", ["--uds", "/run/s", "a:b"], {}) is None
    assert targets("hypercorn", ["a:b"], {}) is None


def test_check_bind_names_the_reason() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(gate.GateError) as caught:
            gate.check_bind("127.0.0.1", port)
    assert caught.value.code == exitcodes.BIND_FAILED
    assert caught.value.message == f"cannot bind 127.0.0.1:{port}: the port is in use"
    gate.check_bind("127.0.0.1", port)  # free again
    with pytest.raises(gate.GateError, match="not an address of this host"):
        gate.check_bind("192.0.2.1", 8000)  # TEST-NET-1: never an address of this machine
    with pytest.raises(gate.GateError, match="not an address"):
        gate.check_bind("no-such-host.invalid", 8000)


def test_resolve_commands(tmp_path: Path) -> None:
    found = gate.resolve(["gunicorn", "-w", "2", "app:app"], {"PATH": str(tmp_path)})
    assert found.argv == [sys.executable, "-m", "gunicorn", "-w", "2", "app:app"]
    assert found.how == "console script gunicorn" and found.name == "gunicorn"
    py = gate.resolve(["python3", "-m", "uvicorn", "a:b"], {})
    assert py.argv == [sys.executable, "-m", "uvicorn", "a:b"] and py.name == "uvicorn"
    script = tmp_path / "serve"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert gate.resolve(["serve", "x"], {"PATH": str(tmp_path)}).argv == [str(script), "x"]
    assert gate.resolve([str(script)], {}).how == f"executable {script}"
    for missing in (["nosuch-server"], [str(tmp_path / "nope")]):
        with pytest.raises(gate.GateError) as caught:
            gate.resolve(missing, {"PATH": str(tmp_path)})
        assert caught.value.code == exitcodes.COMMAND_NOT_FOUND


def test_console_script_without_main_gets_a_bootstrap() -> None:
    # mypy's package has no console script named like it with a __main__ for stubgen.
    boot = gate.console_script("stubgen")
    assert boot is not None and boot[0] == "-c" and "mypy.stubgen" in boot[1]


def test_command_from_the_environment() -> None:
    env = {"ALLOCSCOPE_COMMAND": "gunicorn --bind ${HOST}:$PORT 'app:app'", "HOST": "::1"}
    assert launch.command_from_environ({**env, "PORT": "81"}) == [
        "gunicorn", "--bind", "::1:81", "app:app",
    ]  # fmt: skip
    # An unset variable stays as written (the server then says what it makes of it).
    assert launch.command_from_environ(env)[2] == "::1:$PORT"
    assert launch.command_from_environ({"ALLOCSCOPE_COMMAND": "  "}) == []
    with pytest.raises(launch.LaunchError) as caught:
        launch.command_from_environ({"ALLOCSCOPE_COMMAND": "gunicorn 'app:app"})
    assert caught.value.code == exitcodes.USAGE


def _check_lock() -> object:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "container" / "check-lock.py"
    spec = importlib.util.spec_from_file_location("check_lock", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("flask==3.1.3\n", "flask==3.1.3 has no --hash"),
        ("flask>=3 --hash=sha256:" + "a" * 64 + "\n", "flask>=3 is not pinned with =="),
        ("-r other.txt\n", "includes another file (-r): inline it"),
    ],
)
def test_check_lock_refuses_what_pip_could_not_verify(text: str, problem: str) -> None:
    assert problem in _check_lock().problems(text)  # type: ignore[attr-defined]


def test_check_lock_accepts_the_locks_in_the_repository() -> None:
    repo = Path(__file__).resolve().parents[2]
    locks = [repo / "container" / "requirements.lock", *repo.glob("examples/*/requirements.lock")]
    assert len(locks) == 3
    for lock in locks:
        assert _check_lock().problems(lock.read_text()) == [], lock  # type: ignore[attr-defined]
