"""What each figure of a run means, and how a run's figures come from its marks."""

from __future__ import annotations

from collections.abc import Sequence

from allocscope.bench.record import Mark, RunRecord

MB = 2**20

METRICS = {
    "rss_before": "RSS when the work starts",
    "rss_peak": "peak RSS (VmHWM) up to the end of the work and the freeing",
    "rss_work_end": "RSS when the work ends, its survivors still held",
    "rss_freed": "RSS right after everything is freed",
    "rss_retained": "RSS at the last --settle point after the work (a service: after its load)",
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
    put("work_s", end, end.info.work_s if end else None)
    put("cpu_s", end, end.info.cpu_s if end else None)
    put("free_s", freed, freed.info.free_s if freed else None)
    server = [m.info.server_cpu_s for m in (start, end) if m is not None]
    if len(server) == 2 and server[0] is not None and server[1] is not None:
        out["client_cpu_s"] = out.pop("cpu_s", 0.0)  # a workload's server: its CPU counts
        out["cpu_s"] = server[1] - server[0]
    peaks = [m.hwm for m in (end, freed) if m is not None and m.hwm is not None]
    if start is not None and freed is not None:
        peaks += [rss for t, rss in timeline if start.t <= t <= freed.t]
    if peaks:
        out["rss_peak"] = max(peaks)
    settles = [m for m in marks if m.event == "settle"]
    for m in settles:
        put(settle_key(m.info.after_s or 0.0), m, m.rss)
    last = settles[-1] if settles else freed
    put("rss_retained", last, last.rss if last else None)
    purged = by.get("purged")
    put("rss_purged", purged, purged.rss if purged else None)
    return out
