"""A small FastAPI app for the --serve tests (under uvicorn)."""

from typing import Any

from fastapi import FastAPI

app = FastAPI()
CACHE: list[str] = []


@app.get("/healthz")
def healthz() -> str:
    return "ok"


@app.get("/")
def index() -> dict[str, Any]:
    if len(CACHE) % 10 == 0:
        CACHE.append("x" * (700 + len(CACHE) % 3000))
    else:
        CACHE.append("")
    return {"items": [{"i": i, "s": "y" * (i % 50)} for i in range(40)], "cached": len(CACHE)}


@app.post("/echo")
def echo(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in sorted(doc)}
