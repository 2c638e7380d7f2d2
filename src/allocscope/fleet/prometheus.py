"""Instant queries against a Prometheus's HTTP API (standard library only).

Every failure becomes an AllocscopeError with its own exit code: no answer at all
(refused, DNS, TLS, timeout), or an answer that is an error (HTTP status, Prometheus's
own ``"status": "error"``, a body that is not its JSON).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from allocscope import exitcodes
from allocscope.errors import AllocscopeError

MAX_BODY = 64 * 2**20  # a fleet's answer is large, but not unbounded


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Prometheus:
    url: str  # e.g. http://127.0.0.1:9090 (a path prefix is kept: /prometheus)
    timeout: float = 30.0
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None

    def query(self, expr: str) -> list[Sample]:
        """The instant vector ``expr`` evaluates to now."""
        body = urllib.parse.urlencode({"query": expr}).encode()
        request = urllib.request.Request(
            self.url.rstrip("/") + "/api/v1/query", data=body, headers=self._headers()
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._tls()
            ) as response:
                raw = response.read(MAX_BODY)
        except urllib.error.HTTPError as e:
            raise AllocscopeError(
                f"Prometheus at {self.url} answered HTTP {e.code} to {expr!r}: "
                f"{_error_text(e.read(4096)) or e.reason}",
                exitcodes.PROMETHEUS_QUERY_FAILED,
            ) from e
        except (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError) as e:
            reason = getattr(e, "reason", e)
            raise AllocscopeError(
                f"cannot reach Prometheus at {self.url}: {reason}",
                exitcodes.PROMETHEUS_UNREACHABLE,
            ) from e
        return _samples(raw, self.url, expr)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.basic_auth is not None:
            pair = ":".join(self.basic_auth).encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        return headers

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=self.ca_file)


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", "")).strip()
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace").strip()[:200]


def _samples(raw: bytes, url: str, expr: str) -> list[Sample]:
    def bad(why: str) -> AllocscopeError:
        return AllocscopeError(
            f"Prometheus at {url} answered {expr!r} with {why}",
            exitcodes.PROMETHEUS_QUERY_FAILED,
        )

    try:
        doc: Any = json.loads(raw)
    except ValueError as e:
        raise bad("a body that is not JSON (is this Prometheus's address?)") from e
    if not isinstance(doc, dict):
        raise bad("JSON that is not Prometheus's")
    if doc.get("status") != "success":
        raise bad(f"an error: {doc.get('error', 'no reason given')}")
    data = doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise bad("a result that is not an instant vector")
    try:
        return [
            Sample({str(k): str(v) for k, v in item["metric"].items()}, float(item["value"][1]))
            for item in data["result"]
        ]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise bad(f"a malformed sample ({e})") from e
