"""The ``allocscope`` command: parse, call one subcommand, return its exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from allocscope import __version__, exitcodes

# Subcommand -> module under allocscope.commands (imported only when chosen).
COMMANDS = ("info", "inspect", "agent", "verify", "serve", "bench", "compare", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allocscope",
        description="See, prove and measure the allocator and FIPS crypto of a Python process.",
    )
    parser.add_argument("--version", action="version", version=f"allocscope {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"allocscope.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(given)
    # `compare --` with nothing after it is an empty command, not "no command".
    args.dashdash = "--" in given
    try:
        return int(args.run(args))
    except KeyboardInterrupt as e:  # bench.runner.Interrupted carries its signal's code
        return int(getattr(e, "exit_code", exitcodes.INTERRUPTED))
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `allocscope info | head`: not an error
        return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
