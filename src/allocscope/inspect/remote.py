"""The probe through ``sys.remote_exec`` (PEP 768): CPython 3.14 into CPython 3.14.

No register of ours is touched: the target's interpreter runs the script at its next
safe point, in its main thread. The script goes into a fresh directory of the target's
/tmp (as it sees it: /proc/PID/root/tmp), owned by the target's user so it can answer
there; it deletes itself when it starts and the caller removes the directory. Past the
timeout the caller leaves an ``abandoned`` mark: the script, when it runs, tidies up.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

from allocscope.inspect import payload
from allocscope.inspect.errors import AttachTimeout, AttachUnsupported
from allocscope.inspect.procinfo import Proc


class Refused(AttachUnsupported):
    """sys.remote_exec could not be used (the target disables it, its /tmp is read-only):
    nothing was sent, another way may still work."""


def available(target: tuple[int, int] | None) -> str | None:
    """Why sys.remote_exec cannot reach a target of CPython ``target``, or None."""
    here = sys.version_info[:2]
    if not hasattr(sys, "remote_exec"):
        return f"allocscope runs on CPython {here[0]}.{here[1]}, without sys.remote_exec"
    if target != here:
        found = "an unknown CPython" if target is None else f"CPython {target[0]}.{target[1]}"
        return f"the target runs {found}, allocscope CPython {here[0]}.{here[1]}"
    return None


def run(proc: Proc, trim: bool, deadline: float, timeout: float) -> dict[str, Any]:
    """The probe's answer from inside ``proc``, by sys.remote_exec."""
    inside = f"/tmp/allocscope-attach-{secrets.token_hex(6)}"
    here = proc.in_root(inside)
    uid, gid = _owner(proc)
    try:
        os.mkdir(here, 0o700)
        os.chown(here, uid, gid)
        with open(os.open(here + "/probe.py", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                  "w", encoding="utf-8") as f:  # fmt: skip
            f.write(payload.script(inside, trim))
        os.chown(here + "/probe.py", uid, gid)
    except OSError as e:
        _tidy(here)
        raise Refused(f"cannot write the probe into the target's /tmp: {e}") from e
    try:
        with _seen_here(inside, here):
            sys.remote_exec(proc.pid, inside + "/probe.py")  # type: ignore[attr-defined,unused-ignore]
    except (OSError, RuntimeError, ValueError) as e:
        _tidy(here)
        raise Refused(f"sys.remote_exec into process {proc.pid} failed: {e}") from e
    try:
        while True:
            try:
                with open(here + "/answer.json", "rb") as f:
                    answer: dict[str, Any] = json.loads(f.read())
                _tidy(here)
                return answer
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise AttachTimeout(
                    f"process {proc.pid} did not answer within {timeout:g} s: its main thread "
                    "has not reached a safe point (blocked in C code or a lock); the script "
                    "will tidy up after itself when it does"
                )
            time.sleep(0.01)
    except BaseException:
        with contextlib.suppress(OSError), open(here + "/abandoned", "w", encoding="ascii"):
            pass
        if os.path.exists(here + "/answer.json"):  # it answered just now: nobody left to tidy
            _tidy(here)
        raise


@contextlib.contextmanager
def _seen_here(inside: str, here: str) -> Iterator[None]:
    """sys.remote_exec checks that the script exists where allocscope runs, though the
    target opens it in its own mount namespace: from another one (a container, a sidecar)
    an empty file of the same path stands in here while the call is made."""
    if os.path.exists(inside + "/probe.py"):
        yield
        return
    os.mkdir(inside, 0o700)
    try:
        with open(inside + "/probe.py", "w", encoding="ascii"):
            pass
        yield
    finally:
        _tidy(inside)


def _owner(proc: Proc) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in proc.text("status").splitlines() if ":" in line)
    return int(fields["Uid"].split()[1]), int(fields["Gid"].split()[1])  # effective ids


def _tidy(here: str) -> None:
    for name in ("probe.py", "answer.json", "answer.tmp", "abandoned"):
        with contextlib.suppress(OSError):
            os.unlink(f"{here}/{name}")
    with contextlib.suppress(OSError):
        os.rmdir(here)
