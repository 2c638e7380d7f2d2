"""The launcher: a gate in front of the demo service or any command.

``python launch.py`` starts allocscope's demo service on granian; ``python launch.py
[--vendor-root DIR] [--] COMMAND [ARG...]`` (a first argument that is not a flag is the
command) checks the process and then execs COMMAND with the environment unchanged, e.g.
``launch.py gunicorn -c python:allocscope.gunicorn_conf app:app``. Without arguments the
command comes from ``ALLOCSCOPE_COMMAND`` (the image's ``APP_COMMAND``; split like a shell
would, ``$VAR`` taken from the environment, no shell), and without that it is the demo.
``--check-only`` (the image build) runs every check but the bind and exits 0.

This file is the container's entrypoint (copied to ``/app/launch.py``) and runs *before*
the vendored packages are on the path, so it imports nothing outside the standard library
at module level. ``allocscope serve`` runs the demo's path without the vendor lookup.

Steps, each failing with one JSON line on stderr and its own exit code:

1. vendor directory ``<ALLOCSCOPE_VENDOR_ROOT or /app/vendor>/<cache tag>``: the exact tag
   is preferred; if it is absent and exactly one directory exists, that one is used only
   when every compiled extension in it loads under this interpreter (111 none, 113 ABI);
2. the server (granian) and the application (allocscope) must be importable from it (112);
3. the start-up check: ``ALLOCSCOPE_EXPECT_*``, every ``LD_PRELOAD`` entry loaded and every
   ``MALLOC_CONF`` key in effect, judged by the probe in this very process, whose
   environment the server inherits through exec (114, fail closed; with
   ``ALLOCSCOPE_VERIFY_STRICT=1`` a check of nothing fails too; an
   ``ALLOCSCOPE_EXPECT_*`` value it cannot read is a bad setting, 2, checked or not);
4. a command only (``allocscope.service.gate``): it must exist (a path, a console script
   of the vendored packages, or PATH; 115) and its ``module:attr`` app must import, in a
   child (116, ``ALLOCSCOPE_APP_CHECK=0`` skips it, ``ALLOCSCOPE_APP`` names the app);
5. the address the server will listen on must bind (117; the demo's HOST/PORT, or
   gunicorn's/uvicorn's/granian's from their arguments; ``ALLOCSCOPE_BIND_CHECK`` = ``auto``,
   ``off`` or ``HOST:PORT,...``). Only a pre-check: a port taken between the check and the
   server's own bind is the server's to report;
6. one JSON line describing the launch, then ``os.execve``. Anything unexpected on the way
   is one line and exit 70, never a traceback.

Configuration flows one way: environment, then command-line flags, then one ``Settings``,
then the server's argv and the ``ALLOCSCOPE_*`` variables the application reads back.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shlex
import string
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any, NoReturn

# Mirrors allocscope.exitcodes (this file must not import the package; a test keeps them equal).
USAGE = 2
VENDOR_MISSING = 111
SERVER_MISSING = 112
ABI_MISMATCH = 113
STARTUP_CHECK_FAILED = 114
COMMAND_NOT_FOUND = 115
APP_IMPORT_FAILED = 116
BIND_FAILED = 117
INTERNAL = 70

DEFAULT_VENDOR_ROOT = "/app/vendor"
APP_FACTORY = "allocscope.service.app:create_app"
SERVER = "granian"

# A compiled extension names the ABI it was built for: mod.cpython-313-x86_64-linux-gnu.so
_EXTENSION_TAG = re.compile(r"\.((?:cpython|pypy)[^./]*|abi3)\.so$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class LaunchError(Exception):
    def __init__(self, code: int, error: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.error, self.message, self.details = code, error, message, details


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on stderr: the service's only log format besides granian's own."""
    line = json.dumps({"event": event, **fields}, default=str, separators=(",", ":"))
    # One write of line and newline together: print() writes them separately, and forked
    # workers sharing stderr then interleave one's record before another's newline.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# name -> (environment variable, minimum, maximum); booleans carry no bounds.
_ENV: dict[str, tuple[str, int, int]] = {
    "port": ("PORT", 1, 65535),
    "workers": ("WEB_CONCURRENCY", 1, 64),
    "threads": ("ALLOCSCOPE_THREADS", 1, 256),
    "header_timeout_ms": ("ALLOCSCOPE_HEADER_TIMEOUT_MS", 1, 60_000),
    "max_header_bytes": ("ALLOCSCOPE_MAX_HEADER_BYTES", 8192, 1 << 24),
    "max_body_bytes": ("ALLOCSCOPE_MAX_BODY_BYTES", 0, 1 << 30),
    "shutdown_timeout_s": ("ALLOCSCOPE_SHUTDOWN_TIMEOUT", 1, 1800),
}
_ENV_FLAGS = {"access_log": "ALLOCSCOPE_ACCESS_LOG", "startup_check": "ALLOCSCOPE_STARTUP_CHECK"}


@dataclass(frozen=True)
class Settings:
    """Everything the launcher decides; the defaults mirror the Ruby demo's Puma."""

    host: str = "127.0.0.1"  # HOST; the container sets 0.0.0.0 explicitly
    port: int = 8080
    workers: int = 1  # processes (forked by granian)
    threads: int = 5  # Python threads per worker (granian's blocking threads)
    header_timeout_ms: int = 10_000  # request line and headers must arrive within this
    max_header_bytes: int = 16_384  # request line + headers (granian's HTTP/1 buffer)
    max_body_bytes: int = 1 << 20  # request bodies past this get 413 (the app enforces it)
    shutdown_timeout_s: int = 30  # in-flight requests get this long after SIGTERM
    access_log: bool = False  # one line per request costs throughput: off by default
    startup_check: bool = True  # fail closed when expectations are unmet

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("HOST"):
            values["host"] = env["HOST"]
        for name, (var, low, high) in _ENV.items():
            if env.get(var, "").strip():
                values[name] = bounded_int(var, env[var], low, high)
        for name, var in _ENV_FLAGS.items():
            if env.get(var, "").strip():
                values[name] = parse_flag(var, env[var])
        return cls(**values)

    def environ(self) -> dict[str, str]:
        """The variables that carry these settings to the application in each worker."""
        env = {"HOST": self.host, "PORT": str(self.port), "WEB_CONCURRENCY": str(self.workers)}
        for name, (var, _, _) in _ENV.items():
            env[var] = str(getattr(self, name))
        for name, var in _ENV_FLAGS.items():
            env[var] = "1" if getattr(self, name) else "0"
        return env

    def server_args(self) -> list[str]:
        """granian's command line. HTTP/1 only: the limits below are HTTP/1 limits."""
        args = [
            "--interface", "wsgi", "--factory",
            "--host", self.host, "--port", str(self.port),
            "--workers", str(self.workers), "--blocking-threads", str(self.threads),
            "--http", "1", "--no-ws",
            "--http1-header-read-timeout", str(self.header_timeout_ms),
            "--http1-buffer-size", str(self.max_header_bytes),
            "--workers-kill-timeout", str(self.shutdown_timeout_s),
            "--log-level", "info",
        ]  # fmt: skip
        if self.access_log:
            args.append("--access-log")
        return [*args, APP_FACTORY]


def bounded_int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise LaunchError(USAGE, "bad_setting", f"{name}={text!r} is not an integer") from None
    if not low <= value <= high:
        raise LaunchError(USAGE, "bad_setting", f"{name}={value} is outside {low}..{high}")
    return value


def parse_flag(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE + _FALSE:
        raise LaunchError(USAGE, "bad_setting", f"{name}={text!r} is not a boolean (1 or 0)")
    return word in _TRUE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags override the environment; shared by ``allocscope serve`` and this file."""
    parser.add_argument("--host", help="address to bind (HOST; default 127.0.0.1)")
    for name, (var, low, high) in _ENV.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, metavar="N", help=f"{var} ({low}..{high})")
    parser.add_argument("--access-log", action="store_true", default=None, help="log every request")
    parser.add_argument(
        "--no-startup-check",
        dest="startup_check",
        action="store_false",
        default=None,
        help="serve even when ALLOCSCOPE_EXPECT_* is unmet (/readyz then reports it)",
    )


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags override the environment: fold them in as variables, then parse once."""
    merged = dict(os.environ if environ is None else environ)
    if getattr(args, "host", None):
        merged["HOST"] = args.host
    for name, (var, _, _) in _ENV.items():
        if getattr(args, name, None) is not None:
            merged[var] = str(getattr(args, name))
    for name, var in _ENV_FLAGS.items():
        if getattr(args, name, None) is not None:
            merged[var] = "1" if getattr(args, name) else "0"
    return Settings.from_environ(merged)


def incompatible_extensions(directory: str) -> list[str]:
    """Compiled extensions under ``directory`` that this interpreter cannot import."""
    ours = set(importlib.machinery.EXTENSION_SUFFIXES)
    bad = []
    for dirpath, _, files in os.walk(directory):
        for name in files:
            match = _EXTENSION_TAG.search(name)
            if match and match.group(0) not in ours:
                bad.append(os.path.relpath(os.path.join(dirpath, name), directory))
    return sorted(bad)


def choose_vendor(root: str, tag: str | None = sys.implementation.cache_tag) -> tuple[str, str]:
    """(directory, how it was chosen: 'exact' or 'fallback') or a LaunchError."""
    if not os.path.isdir(root):
        raise LaunchError(
            VENDOR_MISSING, "vendor_missing", f"vendor root {root} does not exist", root=root
        )
    if tag and os.path.isdir(os.path.join(root, tag)):
        return os.path.join(root, tag), "exact"
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not found:
        raise LaunchError(
            VENDOR_MISSING,
            "vendor_missing",
            f"no vendor directory for {tag} under {root} (it is empty)",
            root=root,
            wanted=tag,
        )
    if len(found) > 1:
        raise LaunchError(
            ABI_MISMATCH,
            "abi_mismatch",
            f"no vendor directory for {tag} under {root}; found {', '.join(found)}",
            root=root,
            wanted=tag,
            found=found,
        )
    only = os.path.join(root, found[0])
    bad = incompatible_extensions(only)
    if bad:
        raise LaunchError(
            ABI_MISMATCH,
            "abi_mismatch",
            f"the only vendor directory {only} was built for another ABI "
            f"({len(bad)} extension(s) this {tag} interpreter cannot load, e.g. {bad[0]})",
            root=root,
            wanted=tag,
            found=found,
            incompatible=bad[:5],
        )
    return only, "fallback"


def use_vendor(directory: str, environ: dict[str, str]) -> None:
    """Put ``directory`` first on this process's path and on the server's PYTHONPATH (the
    image's PYTHONPATH already starts with it: then the environment stays as it is)."""
    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.invalidate_caches()
    rest = environ.get("PYTHONPATH")
    if rest is None or rest.split(os.pathsep)[0] != directory:
        environ["PYTHONPATH"] = directory + (os.pathsep + rest if rest else "")


def require_importable(server: str | None = SERVER) -> str:
    """The server's version; a LaunchError when the server or allocscope is missing."""
    wanted = [("allocscope", "the application" if server else "the package that runs the checks")]
    if server:
        wanted.insert(0, (server, "the server"))
    for module, what in wanted:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise LaunchError(
                SERVER_MISSING,
                "server_missing",
                f"{what} ({module}) is not importable from {os.pathsep.join(sys.path[:3])}...",
                module=module,
            )
    try:
        return metadata.version(server or "allocscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def startup_checks(run: bool) -> list[dict[str, Any]]:
    """Read ``ALLOCSCOPE_EXPECT_*`` (a bad value is a bad setting, checked or not: every
    worker reads them for /readyz) and, if ``run``, run the probe's checks here; exec keeps
    the environment, so the server sees the same."""
    from allocscope.expectations import Expectations, check
    from allocscope.probe.snapshot import snapshot

    try:
        want = Expectations.from_environ()
    except ValueError as e:
        raise LaunchError(USAGE, "bad_setting", str(e)) from None
    if not run:
        return []
    results = [asdict(c) for c in check(snapshot(), want)]
    strict = os.environ.get("ALLOCSCOPE_VERIFY_STRICT") or "0"
    if not results and parse_flag("ALLOCSCOPE_VERIFY_STRICT", strict):
        raise LaunchError(
            STARTUP_CHECK_FAILED,
            "startup_check_failed",
            "nothing to check, and ALLOCSCOPE_VERIFY_STRICT=1 fails a gate that checks "
            "nothing: set ALLOCSCOPE_EXPECT_ALLOCATOR or ALLOCSCOPE_EXPECT_FIPS",
        )
    failed = [c for c in results if not c["passed"]]
    if failed:
        raise LaunchError(
            STARTUP_CHECK_FAILED,
            "startup_check_failed",
            "; ".join(f"{c['name']}: {c['detail']}" for c in failed),
            failed=failed,
        )
    return results


def _record(vendor: str | None, how: str | None) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "abi": sysconfig.get_config_var("SOABI"),
        "cache_tag": sys.implementation.cache_tag,
        "vendor": vendor,
        "vendor_match": how,
    }


def _vendor(vendor_root: str | None, environ: dict[str, str]) -> dict[str, Any]:
    vendor = how = None
    if vendor_root is not None:
        vendor, how = choose_vendor(vendor_root)
        use_vendor(vendor, environ)
    return _record(vendor, how)


def _checks_record(checks: list[dict[str, Any]], run: bool) -> dict[str, bool] | str:
    return {c["name"]: c["passed"] for c in checks} if run else "off"


def prepare(
    settings: Settings, vendor_root: str | None, environ: dict[str, str]
) -> tuple[list[str], dict[str, Any]]:
    """Everything before exec'ing the demo: (argv, the launch record). Changes ``environ``."""
    record = _vendor(vendor_root, environ)
    version = require_importable()
    checks = startup_checks(settings.startup_check)
    environ.update(settings.environ())
    bind = bind_check(environ, [(settings.host, settings.port)])
    record.update(
        server=SERVER,
        server_version=version,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        threads=settings.threads,
        checks=_checks_record(checks, settings.startup_check),
        bind_check=bind,
    )
    return [sys.executable, "-m", SERVER, *settings.server_args()], record


def prepare_command(
    command: Sequence[str], vendor_root: str | None, environ: dict[str, str]
) -> tuple[list[str], dict[str, Any]]:
    """Everything before exec'ing ``command``: the environment stays as the caller set it
    (but for the vendor directory on PYTHONPATH, which the image's PYTHONPATH already has)."""
    record = _vendor(vendor_root, environ)
    require_importable(server=None)
    run = parse_flag("ALLOCSCOPE_STARTUP_CHECK", environ.get("ALLOCSCOPE_STARTUP_CHECK") or "1")
    checks = startup_checks(run)
    from allocscope.service import gate

    found = gate.resolve(command, environ)
    args = command[1:]
    app = environ.get("ALLOCSCOPE_APP") or gate.app_target(args)
    app_check = "off"
    if parse_flag("ALLOCSCOPE_APP_CHECK", environ.get("ALLOCSCOPE_APP_CHECK") or "1"):
        app_check = "no module:attr argument"
        if app:
            gate.check_app(app, environ, gate.app_directory(args))
            app_check = "imports"
    bind = bind_check(environ, gate.bind_targets(found.name, args, environ))
    record.update(
        command=list(command),
        exec=found.argv,
        resolved=found.how,
        app=app,
        app_check=app_check,
        checks=_checks_record(checks, run),
        bind_check=bind,
    )
    return found.argv, record


def bind_check(environ: Mapping[str, str], known: list[tuple[str, int]] | None) -> list[str] | str:
    """Bind every address the server will listen on (ALLOCSCOPE_BIND_CHECK: auto, off or
    HOST:PORT,...); the checked addresses, or why none were."""
    from allocscope.service import gate

    setting = (environ.get("ALLOCSCOPE_BIND_CHECK") or "auto").strip()
    if setting.lower() in _FALSE:
        return "off"
    if setting.lower() != "auto":
        parsed = [gate.parse_bind(b.strip(), 8000) for b in setting.split(",") if b.strip()]
        known = [b for b in parsed if b is not None]
    if not known:
        return "unknown address: not checked (ALLOCSCOPE_BIND_CHECK=HOST:PORT names it)"
    for host, port in known:
        gate.check_bind(host, port)
    return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in known]


def launch(
    settings: Settings,
    vendor_root: str | None,
    command: Sequence[str] | None = None,
    check_only: bool = False,
) -> NoReturn:
    """Prepare, print the launch line, exec; on failure print the error line and exit.
    ``check_only`` (the image build): every check but the bind, then exit 0."""
    environ = dict(os.environ)
    if check_only:
        environ["ALLOCSCOPE_BIND_CHECK"] = "off"
    try:
        if command:
            argv, record = prepare_command(command, vendor_root, environ)
        else:
            argv, record = prepare(settings, vendor_root, environ)
            if check_only:
                from allocscope.service import gate

                gate.check_app(APP_FACTORY, environ, None)
    except LaunchError as e:
        fail(e)
    except Exception as e:
        fail(_as_launch_error(e))
    if check_only:
        log_event("launch_checked", **record)
        sys.exit(0)
    log_event("launch", **record)
    try:
        os.execve(argv[0], argv, environ)
    except OSError as e:  # checked above; a race with the file system
        fail(LaunchError(COMMAND_NOT_FOUND, "exec_failed", f"cannot exec {argv[0]}: {e}"))


def _as_launch_error(e: Exception) -> LaunchError:
    """The gate's errors keep their code; anything else is a bug, said in one line."""
    code, error = getattr(e, "code", None), getattr(e, "error", None)
    if isinstance(code, int) and isinstance(error, str):
        return LaunchError(code, error, str(e), **getattr(e, "details", {}))
    return LaunchError(INTERNAL, "internal", f"{type(e).__name__}: {e}")


def fail(e: LaunchError) -> NoReturn:
    log_event("launch_failed", error=e.error, exit_code=e.code, message=e.message, **e.details)
    sys.exit(e.code)


def command_from_environ(environ: Mapping[str, str]) -> list[str]:
    """ALLOCSCOPE_COMMAND (the image's APP_COMMAND): split like a shell would, with $VAR and
    ${VAR} taken from the environment, but no shell runs (there is none in the image)."""
    text = environ.get("ALLOCSCOPE_COMMAND", "").strip()
    if not text:
        return []
    try:
        return shlex.split(string.Template(text).safe_substitute(environ))
    except ValueError as e:
        raise LaunchError(USAGE, "bad_setting", f"ALLOCSCOPE_COMMAND={text!r}: {e}") from None


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(launcher flags, command): after ``--``, or from the first argument not a flag."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            # a flag's value is not a command: only --vendor-root and the demo's take one
            if i and argv[i - 1] in _VALUE_FLAGS:
                continue
            return argv[:i], argv[i:]
    return argv, []


_VALUE_FLAGS = {"--vendor-root", "--host", *("--" + n.replace("_", "-") for n in _ENV)}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python launch.py [flags] [--] [COMMAND...]``: the container entrypoint."""
    parser = argparse.ArgumentParser(
        description="Check the process, then start the allocscope demo (granian) or COMMAND.",
        usage="launch.py [flags] [--] [COMMAND [ARG...]]",
    )
    add_arguments(parser)
    parser.add_argument(
        "--vendor-root",
        default=os.environ.get("ALLOCSCOPE_VENDOR_ROOT") or DEFAULT_VENDOR_ROOT,
        help="ALLOCSCOPE_VENDOR_ROOT (default /app/vendor)",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="run every check but the bind, print the launch line, exit 0 (the image build)",
    )
    flags, command = split_command(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(flags)
    if not command:
        try:
            command = command_from_environ(os.environ)
        except LaunchError as e:
            fail(e)
    demo_flags = [n for n in (*_ENV, *_ENV_FLAGS, "host") if getattr(args, n, None) is not None]
    if command and demo_flags:
        fail(
            LaunchError(
                USAGE,
                "bad_setting",
                f"--{demo_flags[0].replace('_', '-')} is a setting of the demo service, "
                "not of a command: pass the command its own flags",
            )
        )
    try:
        settings = Settings() if command else settings_from(args)
    except LaunchError as e:
        fail(e)
    launch(settings, args.vendor_root, command, check_only=args.check_only)


if __name__ == "__main__":
    main()
