"""Results files: read (one or many, pooled when they may be), write."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from allocscope import userfile
from allocscope.bench.record import RunRecord
from allocscope.bench.results.document import Results, ResultsError
from allocscope.bench.results.header import VariantInfo
from allocscope.bench.results.schema import parse


def load(paths: str | Sequence[str]) -> Results:
    """Read one results file, or several into one document (demo output: one per variant).

    Refuses (ResultsError) what must not be pooled: the same file twice, the same run in
    two files, or one workload run with different parameters."""
    names = [paths] if isinstance(paths, str) else list(paths)
    seen: dict[str, str] = {}
    loaded = []
    for path in names:
        real = os.path.realpath(path)
        if real in seen:
            raise ResultsError(f"{path}: given twice (as {seen[real]}): its runs would count twice")
        seen[real] = path
        try:
            text = userfile.read_text(path, userfile.RESULTS_LIMIT)
        except userfile.UserFileError as e:
            raise ResultsError(str(e)) from None
        loaded.append(parse(text, path))
    results = loaded[0] if len(loaded) == 1 else merge(loaded)
    check_pooling(results)
    return results


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(params.items())) or "no parameters"


def check_pooling(results: Results) -> None:
    """One workload, one set of parameters: a median of threads-2 and threads-4 runs means
    nothing. And no run twice (the same file under two names)."""
    params: dict[str, dict[str, dict[str, Any]]] = {}
    for run in results.runs:
        key = json.dumps(run.params, sort_keys=True, default=str)
        params.setdefault(run.workload, {}).setdefault(key, run.params)
    for workload, kinds in params.items():
        if len(kinds) > 1:
            found = "; ".join(_describe(p) for p in kinds.values())
            raise ResultsError(
                f"workload {workload} was run with different parameters ({found}): their "
                "runs must not be pooled; report each set separately"
            )
    fingerprints: dict[str, RunRecord] = {}
    for run in results.runs:
        if not run.counts:
            continue  # a failed run has no figures to count twice
        doc = run.to_dict()
        doc.pop("repeat")  # demo files number their runs from 1 each
        key = json.dumps(doc, sort_keys=True, default=str)
        if key in fingerprints:
            raise ResultsError(
                f"the same run appears twice ({run.workload} {run.variant}, runs "
                f"{fingerprints[key].repeat} and {run.repeat}): a file given twice?"
            )
        fingerprints[key] = run


def merge(parts: Sequence[Results]) -> Results:
    """Several results (e.g. glibc.json and jema.json from the demo) as one."""
    first = parts[0]
    runs = [r for p in parts for r in p.runs]
    variants: dict[str, VariantInfo] = {}
    for p in parts:
        for v in p.variants:
            variants.setdefault(v.name, v)
    migrated = [p.migrated_from for p in parts if p.migrated_from is not None]
    return Results(
        created=first.created,
        host=first.host,
        config=first.config,
        variants=list(variants.values()),
        runs=runs,
        allocscope_version=first.allocscope_version,
        migrated_from=min(migrated) if migrated else None,
    )


def save(results: Results, path: str) -> None:
    """Write atomically: a reader never sees half a file."""
    with userfile.replacing(path) as f:
        json.dump(results.to_dict(), f, indent=1)
        f.write("\n")
