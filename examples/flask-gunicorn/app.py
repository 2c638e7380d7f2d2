"""A Flask app served by gunicorn (2 workers) in allocscope's image.

allocscope in it: its small WSGI app mounted under /allocscope (this worker's allocator,
FIPS state, jemalloc's background thread, RSS) and gunicorn's fork hook in the command
(``-c python:allocscope.gunicorn_conf``), so every worker keeps jemalloc's background thread.
"""

from __future__ import annotations

import hashlib
import os

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from allocscope.web import wsgi_app

app = Flask(__name__)
mounts = {"/allocscope": wsgi_app()}
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]


@app.get("/")
def index() -> ResponseReturnValue:
    return jsonify(app="flask-gunicorn", pid=os.getpid())


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(ok=True, pid=os.getpid())


@app.get("/sha256/<text>")
def sha256(text: str) -> ResponseReturnValue:
    """An approved digest, served by OpenSSL's FIPS provider."""
    return jsonify(sha256=hashlib.sha256(text.encode()).hexdigest())
