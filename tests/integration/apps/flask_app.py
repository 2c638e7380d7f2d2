"""A small Flask app for the --serve tests: JSON in, JSON out, a cache that grows."""

from flask import Flask, jsonify, request

app = Flask(__name__)
CACHE: dict[int, str] = {}


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return "ok"


@app.get("/")
def index():  # type: ignore[no-untyped-def]
    n = len(CACHE)
    CACHE[n] = "x" * (700 + n % 3000) if n % 10 == 0 else ""  # some survivors, mixed sizes
    return jsonify(items=[{"i": i, "s": "y" * (i % 50)} for i in range(40)], cached=n)


@app.post("/echo")
def echo():  # type: ignore[no-untyped-def]
    return jsonify(request.get_json(force=True))
