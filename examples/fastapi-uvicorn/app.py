"""A FastAPI app served by uvicorn (2 workers) in allocscope's image.

allocscope in it: its small ASGI app mounted under /allocscope (this worker's allocator,
FIPS state, jemalloc's background thread, RSS). uvicorn's workers are spawned (fresh
interpreters, no fork), so jemalloc starts its background thread in each by itself.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from fastapi import FastAPI

from allocscope.web import asgi_app

app = FastAPI()
app.mount("/allocscope", asgi_app())


@app.get("/")
def index() -> dict[str, Any]:
    return {"app": "fastapi-uvicorn", "pid": os.getpid()}


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True, "pid": os.getpid()}


@app.get("/sha256/{text}")
def sha256(text: str) -> dict[str, str]:
    """An approved digest, served by OpenSSL's FIPS provider."""
    return {"sha256": hashlib.sha256(text.encode()).hexdigest()}
