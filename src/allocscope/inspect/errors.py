"""Why another process could not be inspected; each carries its exit code."""

from __future__ import annotations

from allocscope import exitcodes
from allocscope.probe.errors import ProbeError


class InspectError(ProbeError):
    """The process as a whole cannot be inspected (a part that cannot is an Unknown)."""

    exit_code = exitcodes.BAD_INPUT


class NoSuchProcess(InspectError):
    """No process with that id (exit 3, as InspectError)."""


class NotInspectable(InspectError):
    """A kernel thread, a zombie, or a process that exited while being read."""

    exit_code = exitcodes.NOT_INSPECTABLE


class Exited(NotInspectable):
    """A zombie, or a process that exited while being read: it was there, and has ended."""


class AttachUnsupported(InspectError):
    exit_code = exitcodes.ATTACH_UNSUPPORTED


class AttachDenied(InspectError):
    exit_code = exitcodes.ATTACH_DENIED


class AttachTimeout(InspectError):
    exit_code = exitcodes.ATTACH_TIMEOUT
