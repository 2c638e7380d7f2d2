"""A FastAPI app as a user would write it, served by uvicorn (2 workers) in the tests."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, make_asgi_app

from allocscope import web
from allocscope.prometheus import AllocscopeCollector

app = FastAPI()

registry = CollectorRegistry()
registry.register(AllocscopeCollector())
app.mount("/metrics", make_asgi_app(registry))
app.mount("/allocscope", web.asgi_app())


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"pid": os.getpid()}
