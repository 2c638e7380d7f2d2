"""The ``allocscope`` command: parse, call one subcommand, return its exit code."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from allocscope import __version__, exitcodes
from allocscope.errors import AllocscopeError

# Subcommand -> module under allocscope.commands (each imports its heavy parts when run).
COMMANDS = (
    "info", "inspect", "agent", "fleet", "verify", "serve", "bench", "compare", "tune", "report"
)  # fmt: skip

# Modules outside the standard library -> the extra that installs them (pyproject.toml).
EXTRAS = {
    "psutil": "bench",
    "rich": "report",
    "matplotlib": "report",
    "prometheus_client": "prometheus",
    "granian": "service",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allocscope",
        description="See, prove and measure the allocator and FIPS crypto of a Python process.",
    )
    parser.add_argument("--version", action="version", version=f"allocscope {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"allocscope.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The one place that prints an error and chooses the exit code."""
    for stream in (sys.stdout, sys.stderr):  # environment values may hold undecodable bytes
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    given = list(sys.argv[1:] if argv is None else argv)
    try:  # a flag's value our own types refuse (--seed x) ends like any other bad value
        args = build_parser().parse_args(given)
    except AllocscopeError as e:
        command = next((a for a in given if a in COMMANDS), "")
        return _say(command, str(e), e.exit_code)
    # `compare --` with nothing after it is an empty command, not "no command".
    args.dashdash = "--" in given
    command = args.subcommand
    stdout, sys.stdout = sys.stdout, _Checked(sys.stdout)
    try:
        code = int(args.run(args))
        sys.stdout.flush()
        return code
    except AllocscopeError as e:  # the one error path: one line, its own exit code
        return _say(command, str(e), e.exit_code)
    except KeyboardInterrupt as e:  # runner.Interrupted carries its signal's code
        return int(getattr(e, "exit_code", exitcodes.INTERRUPTED))
    except ModuleNotFoundError as e:
        module = (e.name or "").partition(".")[0]
        if module not in EXTRAS:
            return _internal(command, e)
        message = (
            f"needs {module}, which is not installed: pip install 'allocscope[{EXTRAS[module]}]'"
        )
        return _say(command, message, exitcodes.MISSING_EXTRA)
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `allocscope info | head`: not an error
        return exitcodes.OK
    except Exception as e:  # an OSError here was not expected where it happened: a bug
        return _internal(command, e)
    finally:
        sys.stdout = stdout


class OutputError(AllocscopeError):
    """stdout cannot be written (a full disk, a closed or read-only descriptor): exit 3."""


class _Checked:
    """stdout whose write and flush turn an OSError into an OutputError (a pipe closed by
    its reader stays a BrokenPipeError: not an error)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with self._said():
            return self._stream.write(text)

    def flush(self) -> None:
        with self._said():
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @contextlib.contextmanager
    def _said(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as e:
            _quiet_stdout()
            raise OutputError(f"cannot write to stdout: {e}") from None


def _internal(command: str, e: Exception) -> int:
    """A bug, still one line; ALLOCSCOPE_DEBUG=1 shows the traceback."""
    if os.environ.get("ALLOCSCOPE_DEBUG") == "1":
        raise e
    message = f"internal error: {type(e).__name__}: {e} (ALLOCSCOPE_DEBUG=1 shows where)"
    return _say(command, message, exitcodes.INTERNAL)


def _quiet_stdout() -> None:
    """Point a broken stdout at /dev/null, so the interpreter's final flush is silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _say(command: str, message: str, code: int) -> int:
    line = "; ".join(part.strip() for part in message.strip().splitlines()) or "failed"
    with contextlib.suppress(OSError, ValueError):  # stderr closed: the exit code says it
        print(f"allocscope {command}: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
