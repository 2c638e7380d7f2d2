"""Every worker's series in one scrape, through prometheus_client's multiprocess mode.

Under a pre-fork server a scrape of ``/metrics`` reaches one worker, which can only describe
itself: with ``gunicorn -w 4`` each scrape shows one of the four, in turn. Two answers:

1. scrape each worker's process from outside (the node agent of ``allocscope inspect``), or
2. set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in the server's environment
   (before prometheus_client is imported). Then each worker *publishes* allocscope's
   series into that directory (at start, every ``ALLOCSCOPE_PUBLISH_INTERVAL`` seconds,
   default 5, and when it answers a scrape), and whichever worker answers the scrape
   reads all of them (``MultiProcessCollector``). Gauges keep their ``pid`` label
   (``liveall``: a worker's files go when ``mark_process_dead`` runs, which
   ``allocscope.gunicorn_conf`` does in ``child_exit``); counters are summed over workers
   and lose it, as prometheus_client does for every counter in this mode.

``start()`` begins publishing in this process and, through ``os.register_at_fork``, in
every child forked from it; ``allocscope.web`` calls it when the app is built (with
``PROMETHEUS_MULTIPROC_DIR`` set), so workers publish once they mount it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from allocscope.prometheus import AllocscopeCollector

__all__ = ["Publisher", "enabled", "mark_process_dead", "scrape_registry", "start"]

DEFAULT_INTERVAL = 5.0


def enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def interval() -> float:
    text = os.environ.get("ALLOCSCOPE_PUBLISH_INTERVAL", "").strip()
    try:
        value = float(text) if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


class Publisher:
    """Copies the collector's samples into multiprocess-mode metrics of this process."""

    def __init__(self, collector: AllocscopeCollector | None = None) -> None:
        self._collector = collector or AllocscopeCollector()
        self._metrics: dict[str, Any] = {}
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()

    def publish(self) -> None:
        with self._lock:
            for family in self._collector.collect():
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    labels = {k: v for k, v in sample.labels.items() if k != "pid"}
                    self._set(family.type, family.name, family.documentation, labels, sample.value)

    def _set(self, kind: str, name: str, doc: str, labels: dict[str, str], value: float) -> None:
        names = tuple(sorted(labels))
        key = f"{name}{names}"
        if key not in self._metrics:
            if kind == "counter":
                self._metrics[key] = Counter(name, doc, names, registry=None)
            else:  # gauges and info (published as a gauge of 1, as the text format shows it)
                gauge_name = f"{name}_info" if kind == "info" else name
                self._metrics[key] = Gauge(
                    gauge_name, doc, names, registry=None, multiprocess_mode="liveall"
                )
        metric = self._metrics[key]
        child = metric.labels(*(labels[n] for n in names)) if names else metric
        if kind == "counter":
            seen = (key, tuple(labels[n] for n in names))
            delta = value - self._counted.get(seen, 0.0)
            if delta > 0:
                child.inc(delta)
            self._counted[seen] = value
        else:
            child.set(value)


class _Loop:
    """One publishing thread per process; a forked child starts its own."""

    def __init__(self) -> None:
        self.pid = -1
        self.publisher: Publisher | None = None
        self.hooked = False
        self.lock = threading.Lock()

    def start(self) -> Publisher:
        with self.lock:
            if self.publisher is not None and self.pid == os.getpid():
                return self.publisher
            self.pid, self.publisher = os.getpid(), Publisher()
            if not self.hooked:
                os.register_at_fork(after_in_child=self._forked)
                self.hooked = True
            publisher = self.publisher
        publisher.publish()
        threading.Thread(
            target=self._run, args=(publisher,), name="allocscope-publish", daemon=True
        ).start()
        return publisher

    def _forked(self) -> None:
        self.lock = threading.Lock()  # the parent's may have been held by another thread
        self.start()

    def _run(self, publisher: Publisher) -> None:
        wait = threading.Event().wait
        while self.publisher is publisher and self.pid == os.getpid():
            wait(interval())
            try:
                publisher.publish()
            except Exception:  # the collector counts its own errors; a file error must not kill
                continue


_loop = _Loop()


def start() -> Publisher | None:
    """Publish this process's series (and every forked child's); None when not enabled."""
    return _loop.start() if enabled() else None


def scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` renders: every worker's published series, or this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    if enabled():
        publisher = start()
        registry.register(_Fresh(publisher, MultiProcessCollector(None)))  # type: ignore[no-untyped-call]
    else:
        registry.register(AllocscopeCollector())
    return registry


class _Fresh:
    """Publishes this worker's values just before the files are read for a scrape."""

    def __init__(self, publisher: Publisher | None, files: MultiProcessCollector) -> None:
        self._publisher, self._files = publisher, files

    def collect(self) -> Any:
        if self._publisher is not None:
            self._publisher.publish()
        return self._files.collect()  # type: ignore[no-untyped-call]
