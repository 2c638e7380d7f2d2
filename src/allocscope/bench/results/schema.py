"""Reading a results document of any version: migrations, checks, and the proof re-judged."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from allocscope import __version__
from allocscope.bench.record import RecordError, RunRecord
from allocscope.bench.results.document import SCHEMA, VERSION, Results, ResultsError, _unique
from allocscope.bench.results.header import Config, Host, Session, VariantInfo
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


def _v2_run(run: Any) -> Any:
    """One name per idea: a run's evidence was ``target``; a service's RSS read after its
    load was ``idle`` (marks) and ``rss_idle``/``rss_idle_S`` (figures), as a workload's is
    ``settle`` and ``rss_retained``/``rss_settle_S``."""
    if not isinstance(run, dict):
        return run  # the reader says what is wrong with it
    run = dict(run)
    if "target" in run:
        run["evidence"] = run.pop("target")
    if run.get("kind") == "service":
        metrics = run.get("metrics")
        if isinstance(metrics, dict):
            run["metrics"] = {_v2_metric(k): v for k, v in metrics.items()}
        marks = run.get("marks")
        if isinstance(marks, list):
            run["marks"] = [
                {**m, "event": "settle"} if isinstance(m, dict) and m.get("event") == "idle" else m
                for m in marks
            ]
    return run


def _v2_metric(key: str) -> str:
    if key == "rss_idle":
        return "rss_retained"
    return "rss_settle_" + key.removeprefix("rss_idle_") if key.startswith("rss_idle_") else key


def _v2_to_v3(doc: Any) -> dict[str, Any]:
    runs = doc.get("runs")
    runs = [_v2_run(r) for r in runs] if isinstance(runs, list) else runs
    return {**doc, "version": 3, "runs": runs}


MIGRATIONS: dict[int, Callable[[Any], dict[str, Any]]] = {
    0: _v0_to_v1,
    1: _v1_to_v2,
    2: _v2_to_v3,
}


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
        runs = doc.get("runs", [])
        if not isinstance(runs, list):
            raise RecordError("runs: expected a list")
        variants = doc.get("variants") or []
        if not isinstance(variants, list):
            raise RecordError(f"variants: expected a list, not {type(variants).__name__}")
        results = Results(
            created=str(doc.get("created", "")),
            host=Host.from_dict(doc.get("host") or {}),
            config=Config.from_dict(doc.get("config") or {}),
            variants=[VariantInfo.from_dict(v) for v in variants],
            runs=[RunRecord.from_dict(r) for r in runs],
            allocscope_version=str(doc.get("allocscope_version", "")),
            migrated_from=original if original != VERSION else None,
            session=Session.from_dict(doc.get("session") or {}),
        )
    except (TypeError, ValueError, AttributeError, RecordError) as e:
        raise ResultsError(f"malformed version-{original} results: {e}") from None
    return recheck(results)


def recheck(results: Results) -> Results:
    """Count a run only if its proof, read back now, proves its variant's allocator: a file
    says ``ok``, but the reader judges (a hand-edited or foreign file may lie)."""
    expected = {v.name: v.allocator for v in results.variants}
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
