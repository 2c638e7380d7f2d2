"""Reading a results document of any version: migrations, checks, and the proof re-judged."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from allocscope import __version__
from allocscope.bench.record import Noise, RecordError, RunRecord, number
from allocscope.bench.results.document import SCHEMA, VERSION, Results, ResultsError, _unique
from allocscope.bench.results.metrics import MB

# --- reading and migrating ---------------------------------------------------------------


def _v0_run(doc: dict[str, Any], index: int) -> dict[str, Any]:
    """One demo-format object -> a version-1 run with the metrics it has."""
    detected = doc.get("allocator")
    name = detected.get("name") if isinstance(detected, dict) else None
    preload = doc.get("ld_preload") or ""
    variant = doc.get("variant") or name or ("jemalloc" if "jemalloc" in preload else None)
    variant = variant or (os.path.basename(preload).split(".")[0] if preload else "glibc")
    metrics: dict[str, float] = {}
    for old, new in (("rss_before_mb", "rss_before"), ("rss_after_mb", "rss_retained")):
        if isinstance(doc.get(old), int | float):
            metrics[new] = float(doc[old]) * MB
    if isinstance(doc.get("time_s"), int | float):
        metrics["work_s"] = float(doc["time_s"])
    if isinstance(doc.get("rss_peak_mb"), int | float):
        metrics["rss_peak"] = float(doc["rss_peak_mb"]) * MB
    proof = None
    if isinstance(detected, dict):
        proof = {"allocator": name, "version": detected.get("version"), "migrated": True}
    return {
        "variant": str(variant),
        "workload": str(doc.get("workload") or "seed"),
        "repeat": index + 1,
        "ok": True,
        "failures": [],
        "metrics": metrics,
        "marks": [],
        "timeline": [],
        "proof": proof,
        "heap": None,
        "exit_code": 0,
        "stderr": "",
        "duration_s": float(doc.get("time_s") or 0),
        "params": {k: doc[k] for k in ("threads", "rounds") if k in doc},
    }


def _v0_to_v1(doc: Any) -> dict[str, Any]:
    items = doc if isinstance(doc, list) else [doc]
    if not items or not all(isinstance(i, dict) and "time_s" in i for i in items):
        raise ResultsError("not an allocscope results file (no schema, and not demo output)")
    runs = [_v0_run(item, i) for i, item in enumerate(items)]
    names = _unique(r["variant"] for r in runs)
    return {
        "schema": SCHEMA,
        "version": 1,
        "created": "",
        "allocscope_version": "",
        "host": {},
        "config": {"source": "demo output (version 0)"},
        "variants": [{"name": n, "allocator": n.split("-")[0], "available": True} for n in names],
        "runs": runs,
    }


def _v1_to_v2(doc: Any) -> dict[str, Any]:
    """Version 2 only adds fields (kind, order, noise, seed) that have defaults."""
    return {**doc, "version": 2}


MIGRATIONS: dict[int, Callable[[Any], dict[str, Any]]] = {0: _v0_to_v1, 1: _v1_to_v2}


def version_of(doc: Any) -> int:
    if not isinstance(doc, dict) or "schema" not in doc:
        return 0
    if doc.get("schema") != SCHEMA:
        raise ResultsError(f"schema {doc.get('schema')!r} is not {SCHEMA!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"schema version {version!r} is not a positive integer")
    if version > VERSION:
        raise ResultsError(
            f"unknown schema version {version}: this allocscope ({__version__}) reads "
            f"versions 0 to {VERSION}; upgrade allocscope to read this file"
        )
    return version


def from_document(doc: Any) -> Results:
    """A parsed JSON document of any known version -> the current :class:`Results`."""
    original = version = version_of(doc)
    while version < VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
    try:
        variants = [_variant(v) for v in _seq(doc.get("variants") or [], "variants")]
        _check_meta(doc)
        runs = doc.get("runs", [])
        if not isinstance(runs, list):
            raise RecordError("runs: expected a list")
        results = Results(
            created=str(doc.get("created", "")),
            host=dict(doc.get("host") or {}),
            config=dict(doc.get("config") or {}),
            variants=variants,
            runs=[RunRecord.from_dict(r) for r in runs],
            allocscope_version=str(doc.get("allocscope_version", "")),
            migrated_from=original if original != VERSION else None,
            session=dict(doc.get("session") or {}),
        )
    except (TypeError, ValueError, AttributeError, RecordError) as e:
        raise ResultsError(f"malformed version-{original} results: {e}") from None
    return recheck(results)


def _seq(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordError(f"{what}: expected a list, not {type(value).__name__}")
    return value


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{what}: expected an object, not {type(value).__name__}")
    return value


def _variant(doc: Any) -> dict[str, Any]:
    v = dict(_obj(doc, "variant"))
    if not isinstance(v.get("name"), str):
        raise RecordError(f"a variant without a name: {doc!r:.80}")
    for key in ("allocator", "unavailable", "description"):
        if v.get(key) is not None and not isinstance(v[key], str):
            raise RecordError(f"variant {v['name']}.{key}: expected text, not {v[key]!r:.40}")
    if not isinstance(v.get("available", True), bool):
        raise RecordError(f"variant {v['name']}.available: expected true or false")
    return v


def _numbers(value: Any, what: str) -> None:
    for x in _seq(value, what):
        number(x, what)


def _check_meta(doc: dict[str, Any]) -> None:
    """The fields the report reads besides the runs: right types, possible values."""
    config = _obj(doc.get("config") or {}, "config")
    if config.get("settle_s") is not None:
        _numbers(config["settle_s"], "config.settle_s")
    for name, params in _obj(config.get("workloads") or {}, "config.workloads").items():
        _obj(params, f"config.workloads.{name}")
    host = _obj(doc.get("host") or {}, "host")
    for key in ("cpus", "cpus_usable"):
        if host.get(key) is not None:
            number(host[key], f"host.{key}")
    for key in ("loadavg_before", "loadavg_after"):
        if host.get(key) is not None:
            _numbers(host[key], f"host.{key}")
    session = _obj(doc.get("session") or {}, "session")
    if session.get("noise") is not None:
        Noise.from_dict(session["noise"], "session.noise")
    for key, value in _obj(session.get("repeats_auto") or {}, "session.repeats_auto").items():
        if not isinstance(value, str):
            raise RecordError(f"session.repeats_auto.{key}: expected text")
    stopped = session.get("interrupted")
    if stopped is not None and stopped not in signal.Signals.__members__:
        raise RecordError(f"session.interrupted: {stopped!r:.40} is not a signal")


def recheck(results: Results) -> Results:
    """Count a run only if its proof, read back now, proves its variant's allocator: a file
    says ``ok``, but the reader judges (a hand-edited or foreign file may lie)."""
    expected = {str(v["name"]): v.get("allocator") for v in results.variants}
    runs = []
    for run in results.runs:
        problems: list[str] = []
        if run.ok and run.repeat > 0:
            expect = expected.get(run.variant)
            if expect is None:
                problems.append(f"variant {run.variant} is not described in the file")
            elif run.proof is None and results.migrated_from != 0:
                problems.append("no proof of its allocator")
            elif run.proof is not None:
                problems += run.proof.problems(str(expect))
        if problems:
            failures = [*run.failures, *(f"rejected on reading: {p}" for p in problems)]
            run = replace(run, ok=False, failures=failures, metrics={})
        runs.append(run)
    return replace(results, runs=runs)


def parse(text: str, where: str = "results") -> Results:
    """Results from JSON text; demo output may also be several objects one after another."""
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as e:
        doc = _concatenated(text)
        if doc is None:
            kind = "truncated" if e.pos >= len(text.rstrip()) else "not valid"
            raise ResultsError(f"{where}: {kind} JSON ({e.msg} at line {e.lineno})") from None
    try:
        return from_document(doc)
    except ResultsError as e:
        raise ResultsError(f"{where}: {e}") from None


def _concatenated(text: str) -> list[Any] | None:
    """``{...}{...}`` or one object per line (bench_alloc output appended to a file)."""
    decoder = json.JSONDecoder()
    items, pos = [], 0
    try:
        while pos < len(text.rstrip()):
            while text[pos].isspace():
                pos += 1
            item, pos = decoder.raw_decode(text, pos)
            items.append(item)
    except (json.JSONDecodeError, IndexError):
        return None
    return items if len(items) > 1 else None
