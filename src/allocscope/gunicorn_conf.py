"""A gunicorn settings module: ``gunicorn -c python:allocscope.gunicorn_conf app:app``.

``post_fork`` turns jemalloc's background thread back on in each worker (see
``allocscope.forksafe``) and logs what it did; ``child_exit`` removes a dead worker's series
in prometheus_client's multiprocess mode (``allocscope.multiprocess``). With a settings
file of your own, add the same three lines to it instead::

    from allocscope.forksafe import after_fork

    def post_fork(server, worker):
        after_fork()

Only names that are gunicorn settings belong in this module: gunicorn reads every one.
"""

from __future__ import annotations

from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    from allocscope.forksafe import after_fork

    result = after_fork()
    server.log.info("allocscope: worker %s: %s (%s)", result.pid, result.detail, result.action)


def child_exit(server: Any, worker: Any) -> None:
    """In multiprocess mode, a dead worker's gauges leave the scrape with it."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
