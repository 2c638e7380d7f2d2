"""A Flask app as a user would write it, served by gunicorn in the tests.

allocscope in it: the collector in a fresh registry behind prometheus_client's /metrics
(the README's four lines), and allocscope's own WSGI app mounted under /allocscope.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, make_wsgi_app
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from allocscope import forksafe, web
from allocscope.prometheus import AllocscopeCollector

app = Flask(__name__)

registry = CollectorRegistry()
registry.register(AllocscopeCollector())
mounts = {"/metrics": make_wsgi_app(registry), "/allocscope": web.wsgi_app()}
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(pid=os.getpid())


@app.get("/background-thread")
def background_thread() -> ResponseReturnValue:
    bt = forksafe.background_thread()
    return jsonify(pid=os.getpid(), background_thread=bt and asdict(bt))
