"""Debian's headless Chromium, driven over the DevTools protocol on a pipe (stdlib only).

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and write to
fd 4, each a JSON document ended by a NUL byte: no port, no websocket library. A page is
opened in its own target; console errors, uncaught exceptions and the browser's own error
log entries (a resource that failed to load) are collected while it loads.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
    "--window-size=1280,900",
)


@dataclass
class Page:
    url: str
    title: str
    text_length: int  # characters of text in the page's main content
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""


class Chromium:
    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("chromium")
        if found is None:
            raise RuntimeError("chromium is not installed: run scripts/install-system-deps.sh")
        self._profile = tempfile.TemporaryDirectory(prefix="allocscope-chromium-")
        to_child, self._write = (_high(fd) for fd in os.pipe())
        self._read, from_child = (_high(fd) for fd in os.pipe())
        # The child's ends become its fds 3 and 4 (both above 9 here, so no clash).
        command = [found, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"]
        self._proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_child} 4>&{from_child}', "chromium", *command],
            pass_fds=(to_child, from_child),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, 9)
            self._proc.wait()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._profile.cleanup()

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._write, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise RuntimeError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:  # fmt: skip
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))
            self._events.append(answer)

    def _wait_for(self, method: str, deadline: float) -> None:
        while not any(e.get("method") == method for e in self._events):
            self._events.append(self._receive(deadline))

    def open(self, url: str, settle: float = 0.5, timeout: float = 30) -> Page:
        """Load a page; what it shows, and every error it logged while loading."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=session)
        self._events.clear()
        self.call("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + timeout
        self._wait_for("Page.loadEventFired", deadline)
        end = time.monotonic() + settle  # late errors: scripts that run after load
        while True:
            try:
                self._events.append(self._receive(end))
            except RuntimeError:
                break
        title = self.evaluate(session, "document.title")
        length = self.evaluate(
            session, "(document.querySelector('article') || document.body).innerText.length"
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        self.call("Target.closeTarget", {"targetId": target})
        return Page(
            url, str(title), int(length), _errors(self._events), base64.b64decode(shot["data"])
        )

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
        )
        return result["result"].get("value")


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            found.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in args)
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            found.append(f"exception: {description}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            found.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
    return found


def _high(fd: int) -> int:
    """The same pipe end as a close-on-exec descriptor numbered 10 or above."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def save(page: Page, path: Path) -> None:
    path.write_bytes(page.screenshot)
