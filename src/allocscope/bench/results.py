"""The results document: one versioned JSON file with every run and its proof.

Version history (``"schema": "allocscope.results"``, ``"version": N``):

- 0: the demo's format, no schema key: one flat JSON object per run, as the Ruby seed and
  ``bench_alloc.py`` print them (``time_s``, ``rss_before_mb``, ``rss_after_mb``, ...), or
  a list of them (``jq -s``). Loads as runs with the few metrics it has.
- 1: this module's format: host, config, variants, runs with marks, timeline and proof.
- 2: each run is a typed :class:`~allocscope.bench.record.RunRecord` (checked types, no
  impossible values), with its ``kind``, its ``order`` within an interleaved repeat and
  the ``noise`` it was measured under; the session records ``seed`` and ``noise``. A
  version-1 file has the same fields minus the new ones, so it migrates unchanged.
  Runs of a user's command (``kind: command``) or service (``kind: service``) carry
  ``target``: the process tree per process, the load's figures, growth slopes, trims.

:func:`load` reads any of them and migrates it, step by step, to the current version. A
newer version than this allocscope knows, or a file that is not JSON, is a
:class:`ResultsError` (the commands exit 3).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from allocscope import __version__, userfile
from allocscope.bench import stats
from allocscope.bench.record import Mark, Noise, Proof, RecordError, RunRecord, number
from allocscope.errors import AllocscopeError

__all__ = ["MB", "Mark", "Proof", "RecordError", "Results", "ResultsError", "Run", "RunRecord"]

SCHEMA = "allocscope.results"
VERSION = 2
MB = 2**20


class ResultsError(AllocscopeError):
    """A results file that cannot be read: truncated, not ours, or too new (exit 3)."""


Run = RunRecord  # the name older code uses


# Metric keys: RSS in bytes, times in seconds. "rss_settle_<s>" exists per settle period.
METRICS = {
    "rss_before": "RSS when the work starts",
    "rss_peak": "peak RSS (VmHWM) up to the end of the work and the freeing",
    "rss_work_end": "RSS when the work ends, its survivors still held",
    "rss_freed": "RSS right after everything is freed",
    "rss_retained": "RSS after the last settle period",
    "rss_purged": "RSS after asking the allocator to return free memory",
    "work_s": "wall time of the work alone",
    "cpu_s": "CPU time of the work (all threads; for http, the server's, read from outside)",
    "client_cpu_s": "http only: the load generator's CPU time",
    "free_s": "time to drop and collect what the work kept",
}


# Figures derived from a run's metrics when read (never stored: they may be negative).
DERIVED = {"rss_kept": "RSS after the last settle period minus RSS when the work started"}
# The figures every ratio carries an interval and a verdict for. Time: CPU time of the
# work, not wall time: on a shared machine other processes stretch wall time, while CPU
# time counts only our own work (its spread is a third to half of wall time's here).
# Memory: retained RSS (what the process holds, which is what a container is billed
# for); rss_kept (above the interpreter's own RSS) is shown beside it with its ratio.
VERDICT_METRICS = ("rss_peak", "rss_retained", "rss_kept", "cpu_s")
HEADLINE = ("rss_retained", "rss_peak", "cpu_s")  # --repeats auto narrows these


def value(run: RunRecord, metric: str) -> float | None:
    if metric == "rss_kept":
        retained, before = run.metrics.get("rss_retained"), run.metrics.get("rss_before")
        return None if retained is None or before is None else retained - before
    return run.metrics.get(metric)


def settle_key(after: float) -> str:
    return f"rss_settle_{after:g}"


def metrics_of(marks: Sequence[Mark], timeline: Sequence[tuple[float, int]]) -> dict[str, float]:
    """The numbers of one run, from its marks (and the timeline, for the peak)."""
    by = {m.event: m for m in marks}
    out: dict[str, float] = {}

    def put(key: str, mark: Mark | None, value: float | None) -> None:
        if mark is not None and value is not None:
            out[key] = value

    start, end, freed = by.get("work_start"), by.get("work_end"), by.get("freed")
    put("rss_before", start, start.rss if start else None)
    put("rss_work_end", end, end.rss if end else None)
    put("rss_freed", freed, freed.rss if freed else None)
    for key in ("work_s", "cpu_s"):
        put(key, end, end.info.get(key) if end else None)
    put("free_s", freed, freed.info.get("free_s") if freed else None)
    server = [m.info.get("server_cpu_s") for m in (start, end) if m is not None]
    if len(server) == 2 and all(isinstance(c, int | float) for c in server):
        out["client_cpu_s"] = out.pop("cpu_s", 0.0)  # a workload's server: its CPU counts
        out["cpu_s"] = float(server[1] or 0) - float(server[0] or 0)
    peaks = [m.hwm for m in (end, freed) if m is not None and m.hwm is not None]
    if start is not None and freed is not None:
        peaks += [rss for t, rss in timeline if start.t <= t <= freed.t]
    if peaks:
        out["rss_peak"] = max(peaks)
    settles = [m for m in marks if m.event == "settle"]
    for m in settles:
        put(settle_key(float(m.info.get("after_s", 0))), m, m.rss)
    last = settles[-1] if settles else freed
    put("rss_retained", last, last.rss if last else None)
    purged = by.get("purged")
    put("rss_purged", purged, purged.rss if purged else None)
    return out


@dataclass(frozen=True)
class Summary:
    """One metric of one variant on one workload, over the runs that count."""

    median: float
    low: float
    high: float
    n: int

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.04 means the repeats lie within 4 % of the median."""
        return (self.high - self.low) / self.median if self.median else 0.0


def summarize(values: Iterable[float]) -> Summary | None:
    vals = sorted(values)
    if not vals:
        return None
    return Summary(statistics.median(vals), vals[0], vals[-1], len(vals))


@dataclass
class Results:
    created: str
    host: dict[str, Any]
    config: dict[str, Any]
    variants: list[dict[str, Any]]  # Variant.to_dict(), unavailable ones included
    runs: list[Run]
    allocscope_version: str = __version__
    migrated_from: int | None = None  # the version the file was written in, if older
    # How the session ran: seed of the shuffled order, why the repeats stopped, noise.
    session: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "created": self.created,
            "allocscope_version": self.allocscope_version,
            "host": self.host,
            "config": self.config,
            "variants": self.variants,
            "session": self.session,
            "comparisons": self.comparisons(),  # derived from the runs; recomputed on reading
            "runs": [r.to_dict() for r in self.runs],
        }

    def workloads(self) -> list[str]:
        return _unique(r.workload for r in self.runs)

    def variant_names(self) -> list[str]:
        names = [str(v["name"]) for v in self.variants]
        return _unique([*names, *(r.variant for r in self.runs)])

    def counted(self, workload: str, variant: str) -> list[Run]:
        return [
            r for r in self.runs if r.workload == workload and r.variant == variant and r.counts
        ]

    def values(self, workload: str, variant: str, metric: str) -> list[float]:
        """One figure per counted run, in run order; ``rss_kept`` is derived (see DERIVED)."""
        return [v for r in self.counted(workload, variant) if (v := value(r, metric)) is not None]

    def summary(self, workload: str, variant: str, metric: str) -> Summary | None:
        return summarize(self.values(workload, variant, metric))

    @property
    def seed(self) -> int:
        """The session's seed (shuffled order, bootstrap); 0 for files that have none."""
        seed = self.session.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0

    def interval(self, workload: str, variant: str, metric: str) -> stats.Interval | None:
        """The median of a figure and its bootstrap interval."""
        key = f"{workload}/{variant}/{metric}"
        return stats.median_interval(
            self.values(workload, variant, metric), seed=self.seed, key=key
        )

    def comparison(self, workload: str, variant: str, metric: str) -> stats.Comparison | None:
        """``variant`` against the baseline on one figure, with its interval and verdict."""
        base = self.baseline()
        if base is None or variant == base:
            return None
        return stats.compare(
            self.values(workload, variant, metric),
            self.values(workload, base, metric),
            seed=self.seed,
            key=f"{workload}/{variant}/{metric}",
            kind="time" if metric.endswith("_s") else "memory",
            floor=self.memory_floor(workload, metric) if stats.is_memory(metric) else 0.0,
        )

    def memory_floor(self, workload: str, metric: str) -> float:
        """stats.memory_floor against the baseline's RSS; for rss_kept, the retained RSS
        the kept part sits in."""
        base = self.baseline()
        whole = "rss_retained" if metric == "rss_kept" else metric
        return stats.memory_floor(self.values(workload, base, whole) if base else [])

    def comparisons(self) -> list[dict[str, Any]]:
        """Every ratio against the baseline on the VERDICT_METRICS, for the JSON."""
        out = []
        for workload in self.workloads():
            for variant in self.variant_names():
                for metric in VERDICT_METRICS:
                    c = self.comparison(workload, variant, metric)
                    if c is not None:
                        out.append(
                            {"workload": workload, "variant": variant, "metric": metric,
                             "baseline": self.baseline(), **c.to_dict()}
                        )  # fmt: skip
        return out

    def baseline(self) -> str | None:
        """The glibc variant the others are compared with."""
        names = self.variant_names()
        if "glibc" in names:
            return "glibc"
        plain = [
            str(v["name"])
            for v in self.variants
            if v.get("allocator") == "glibc" and not v.get("env")
        ]
        return plain[0] if plain else None

    def unavailable(self) -> list[dict[str, Any]]:
        return [v for v in self.variants if not v.get("available", True)]

    def failed(self) -> list[Run]:
        return [r for r in self.runs if not r.ok]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- host metadata -----------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
            return value.strip()
    return platform.processor() or None


def _selected(setting: str | None) -> str | None:
    """'always [madvise] never' -> 'madvise'."""
    if setting and "[" in setting:
        return setting.split("[", 1)[1].split("]", 1)[0]
    return setting


def host() -> dict[str, Any]:
    thp = "/sys/kernel/mm/transparent_hugepage"
    mem = _read("/proc/meminfo") or ""
    total = next(
        (line.split()[1] for line in mem.splitlines() if line.startswith("MemTotal")), None
    )
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": int(total) * 1024 if total else None,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
        "thp_enabled": _selected(_read(f"{thp}/enabled")),
        "thp_defrag": _selected(_read(f"{thp}/defrag")),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "allocscope_version": __version__,
    }


def libraries_seen(runs: Iterable[Run]) -> dict[str, dict[str, Any]]:
    """Each allocator library the children proved they ran on, with its version."""
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        path = run.proof.path if run.proof else None
        if run.ok and run.proof and path and path not in seen:
            seen[path] = {
                "allocator": run.proof.allocator,
                "version": run.proof.version,
                "realpath": os.path.realpath(path),
            }
    return seen


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
    variants: dict[str, dict[str, Any]] = {}
    for p in parts:
        for v in p.variants:
            variants.setdefault(str(v["name"]), v)
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
