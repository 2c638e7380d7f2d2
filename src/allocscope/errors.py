"""The one error type every allocscope command ends with: a message and its exit code.

Code anywhere below the commands raises an ``AllocscopeError`` (or a subclass) for input
it cannot accept; ``cli.main`` catches it once, prints ``allocscope COMMAND: message`` on
one line and exits with ``exit_code`` (see ``exitcodes`` and docs/reference/exit-codes.md).
"""

from __future__ import annotations

from allocscope import exitcodes


class AllocscopeError(Exception):
    """An error the user can act on; the message is one line that says what and why."""

    exit_code: int = exitcodes.BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(AllocscopeError, ValueError):
    """A flag or environment variable with a value we cannot accept (exit 2).

    Also a ``ValueError``, so callers that catch that (the launcher) keep working."""

    exit_code = exitcodes.USAGE
