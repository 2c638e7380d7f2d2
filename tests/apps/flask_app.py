"""A Flask app as a user would write it, served by gunicorn in the tests."""

from __future__ import annotations

import os
from dataclasses import asdict

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from allocscope import forksafe

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(pid=os.getpid())


@app.get("/background-thread")
def background_thread() -> ResponseReturnValue:
    bt = forksafe.background_thread()
    return jsonify(pid=os.getpid(), background_thread=bt and asdict(bt))
