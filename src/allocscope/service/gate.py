"""The launcher's gate in front of any command: find it, import its app, try its bind.

Standard library only (the launcher imports this once the vendor directory is on the path).
Each check raises ``GateError`` with its own exit code; none starts the server, so what
the server itself does after ``exec`` (and a port taken between the check and the bind) is
the server's to report.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allocscope.errors import AllocscopeError
from allocscope.exitcodes import APP_IMPORT_FAILED, BIND_FAILED, COMMAND_NOT_FOUND, USAGE


class GateError(AllocscopeError):
    """A check that failed: its exit code, a short error name, one line, details for JSON.

    (Not the launcher's LaunchError: run as /app/launch.py, the launcher is ``__main__``,
    and a class imported from ``allocscope.service.launch`` would be another class.)"""

    def __init__(self, code: int, error: str, message: str, **details: Any) -> None:
        super().__init__(message, code)
        self.code, self.error, self.message, self.details = code, error, message, details


# module.path:attribute, optionally a factory call: app:app, pkg.main:create_app()
APP_SPEC = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\(.*\))?")
APP_CHECK_TIMEOUT_S = 60
_PYTHONS = re.compile(r"python(3(\.\d+)?)?")


@dataclass(frozen=True)
class Command:
    """What the launcher execs for the command it was given, and how it found it."""

    name: str  # the server's name as given: gunicorn, uvicorn, /usr/bin/x
    argv: list[str]
    how: str


def resolve(command: Sequence[str], environ: Mapping[str, str]) -> Command:
    """A path, this interpreter, a console script of the vendored packages, or PATH."""
    name, args = command[0], list(command[1:])
    if "/" in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return Command(os.path.basename(name), [name, *args], f"executable {name}")
        raise GateError(
            COMMAND_NOT_FOUND, "command_not_found", f"{name} is not an executable file", name=name
        )
    if _PYTHONS.fullmatch(name):
        module = args[1] if args[:1] == ["-m"] and len(args) > 1 else name
        return Command(module, [sys.executable, *args], f"this interpreter ({sys.executable})")
    script = console_script(name)
    if script is not None:
        return Command(name, [sys.executable, *script, *args], f"console script {name}")
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found:
        return Command(name, [found, *args], f"executable {found} (PATH)")
    raise GateError(
        COMMAND_NOT_FOUND,
        "command_not_found",
        f"{name}: no console script of that name in the vendored packages and no executable "
        f"on PATH ({environ.get('PATH', os.defpath)})",
        name=name,
    )


def console_script(name: str) -> list[str] | None:
    """Interpreter arguments that run the console script ``name`` (pip left no bin/ here).

    ``-m name`` when the script's package is ``name`` and has a ``__main__``, so the process
    reads as the server; otherwise a one-line bootstrap like the script pip would write."""
    try:
        found = importlib.metadata.entry_points(group="console_scripts", name=name)
    except Exception:  # a broken distribution's metadata must not end the launcher
        return None
    for entry in found:
        module, _, attr = entry.value.partition(":")
        attr = attr.split("[")[0].strip()
        if module.split(".")[0] == name and _has_main(name):
            return ["-m", name]
        module = module.strip()
        boot = (
            f"import importlib, sys; sys.argv[0] = {name!r}\n"
            f"obj = importlib.import_module({module!r})\n"
            f"for part in {attr!r}.split('.'): obj = getattr(obj, part)\n"
            "sys.exit(obj())"
        )
        return ["-c", boot]
    return None


def _has_main(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.__main__") is not None
    except (ImportError, ValueError):
        return False


def _option_values(args: Sequence[str], *names: str) -> list[str]:
    """Every value of the options ``names`` (``--x v`` and ``--x=v`` forms), in order."""
    values = []
    for i, arg in enumerate(args):
        for n in names:
            if arg == n and i + 1 < len(args):
                values.append(args[i + 1])
            elif n.startswith("--") and arg.startswith(n + "="):
                values.append(arg[len(n) + 1 :])
    return values


def app_target(args: Sequence[str]) -> str | None:
    """The first ``module:attribute`` argument that is not an option's value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-c", "--config"):  # gunicorn's -c python:module looks like an app
            skip = True
        elif not arg.startswith("-") and APP_SPEC.fullmatch(arg):
            return arg
    return None


def app_directory(args: Sequence[str]) -> str | None:
    """Where the server imports the app from, when the command says (else its cwd)."""
    given = _option_values(args, "--chdir", "--app-dir", "--working-dir")
    return given[-1] if given else None


# The child that imports the app: the exception's type and message on one line, never a
# traceback; exit 1 when the module or its attribute is missing.
_CHECK = """
import importlib, sys
module, _, attr = sys.argv[1].partition(":")
try:
    obj = importlib.import_module(module)
    for part in attr.split("(")[0].split("."):
        obj = getattr(obj, part)
except BaseException as e:
    sys.stderr.write(" ".join(f"{type(e).__name__}: {e}".split()) + "\\n")
    sys.exit(1)
"""


def check_app(target: str, environ: Mapping[str, str], cwd: str | None) -> None:
    """Import the app in a child with the server's environment: a child, so the app's
    import-time work (connections, threads) does not happen twice in the server."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHECK, target],
            env=dict(environ),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=APP_CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GateError(
            APP_IMPORT_FAILED,
            "app_import_failed",
            f"importing the app {target} took longer than {APP_CHECK_TIMEOUT_S} s",
            app=target,
        ) from None
    except OSError as e:  # cwd missing, interpreter gone
        raise GateError(
            APP_IMPORT_FAILED, "app_import_failed", f"cannot import the app {target}: {e}"
        ) from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"the check exited {proc.returncode}"
        raise GateError(
            APP_IMPORT_FAILED,
            "app_import_failed",
            f"the app {target} does not import: {reason}",
            app=target,
        )


Bind = tuple[str, int]


def parse_bind(text: str, default_port: int) -> Bind | None:
    """gunicorn's HOST:PORT, [v6]:PORT or HOST; None for unix: and fd:// addresses."""
    if text.startswith(("unix:", "fd://")) or text.startswith("/"):
        return None
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    return host, _port(port, text)


def _port(text: str, where: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise GateError(USAGE, "bad_bind", f"bad port in {where!r}") from None
    if not 0 <= port <= 65535:
        raise GateError(USAGE, "bad_bind", f"port {port} in {where!r} is outside 0..65535")
    return port


def bind_targets(name: str, args: Sequence[str], environ: Mapping[str, str]) -> list[Bind] | None:
    """Where a known server (gunicorn, uvicorn, granian) will listen; None when unknown."""
    if name == "gunicorn":
        args = [*shlex.split(environ.get("GUNICORN_CMD_ARGS", "")), *args]
        given = _option_values(args, "-b", "--bind")
        configs = [c for c in _option_values(args, "-c", "--config") if c != _OUR_GUNICORN_CONF]
        if not given and configs:
            return None  # a settings file of the user's may set bind
        if not given:
            port = environ.get("PORT")
            given = [f"0.0.0.0:{port}"] if port else ["127.0.0.1:8000"]
        binds = [parse_bind(b, 8000) for b in given]
        return None if None in binds else [b for b in binds if b is not None]
    if name in ("uvicorn", "granian"):
        prefix = name.upper()
        if _option_values(args, "--uds", "--fd"):
            return None
        hosts = _option_values(args, "--host") or [environ.get(f"{prefix}_HOST", "127.0.0.1")]
        ports = _option_values(args, "--port") or [environ.get(f"{prefix}_PORT", "8000")]
        return [(hosts[-1], _port(ports[-1], f"--port {ports[-1]}"))]
    return None


_OUR_GUNICORN_CONF = "python:allocscope.gunicorn_conf"


def check_bind(host: str, port: int) -> None:
    """Bind and close at once, as the server will bind (SO_REUSEADDR, like servers set)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as e:
        raise GateError(
            BIND_FAILED, "bind_failed", f"cannot bind {where}: not an address ({e})", bind=where
        ) from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as e:
        raise GateError(
            BIND_FAILED, "bind_failed", f"cannot bind {where}: {_why(e)}", bind=where
        ) from None


def _why(e: OSError) -> str:
    reasons = {
        errno.EADDRINUSE: "the port is in use",
        errno.EADDRNOTAVAIL: "not an address of this host",
        errno.EACCES: "ports below 1024 need privileges this process does not have",
    }
    return reasons.get(e.errno or 0, e.strerror or str(e))
