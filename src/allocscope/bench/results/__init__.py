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
- 3: one name per idea, and the header typed. A run's ``target`` is its ``evidence``
  (:class:`~allocscope.bench.evidence.Evidence`); a service's RSS after its load is read at
  the ``--settle`` points like a workload's: marks ``settle`` (were ``idle``), figures
  ``rss_settle_S`` and ``rss_retained`` (were ``rss_idle_S`` and ``rss_idle``). The host,
  config, variants and session are checked on reading
  (:mod:`allocscope.bench.results.header`), a tune's search too (``session.tune``:
  :mod:`allocscope.bench.results.search`). A version-2 file migrates by those renames.

:func:`load` reads any of them and migrates it, step by step, to the current version. A
newer version than this allocscope knows, or a file that is not JSON, is a
:class:`ResultsError` (the commands exit 3).
"""

from __future__ import annotations

from allocscope.bench.record import Mark, MarkInfo, Proof, RecordError, RunRecord
from allocscope.bench.results.document import (
    SCHEMA,
    VERSION,
    Results,
    ResultsError,
    Summary,
    summarize,
)
from allocscope.bench.results.files import check_pooling, load, merge, save
from allocscope.bench.results.header import Config, Host, Session, VariantInfo
from allocscope.bench.results.host import host, libraries_seen, utc_now
from allocscope.bench.results.metrics import (
    DERIVED,
    HEADLINE,
    MB,
    METRICS,
    VERDICT_METRICS,
    metrics_of,
    settle_key,
    value,
)
from allocscope.bench.results.schema import from_document, parse, recheck, version_of

__all__ = [
    "DERIVED",
    "HEADLINE",
    "MB",
    "METRICS",
    "SCHEMA",
    "VERDICT_METRICS",
    "VERSION",
    "Config",
    "Host",
    "Mark",
    "MarkInfo",
    "Proof",
    "RecordError",
    "Results",
    "ResultsError",
    "RunRecord",
    "Session",
    "Summary",
    "VariantInfo",
    "check_pooling",
    "from_document",
    "host",
    "libraries_seen",
    "load",
    "merge",
    "metrics_of",
    "parse",
    "recheck",
    "save",
    "settle_key",
    "summarize",
    "utc_now",
    "value",
    "version_of",
]
