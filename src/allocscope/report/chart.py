"""Charts with matplotlib (Agg, no display): per workload, the RSS timeline of each variant
and bars for peak RSS, retained RSS and work time. Written as PNG and SVG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from allocscope import exitcodes, userfile
from allocscope.bench.analysis.stats import Interval
from allocscope.bench.record import RunRecord
from allocscope.bench.results import MB, Results
from allocscope.errors import AllocscopeError
from allocscope.report.table import kind_of

FORMATS = ("png", "svg")


class ChartUnavailable(AllocscopeError):
    """matplotlib is not installed (the runtime image does not ship it): the files are
    written without charts, and this is said as a warning."""

    exit_code = exitcodes.MISSING_EXTRA


def representative(runs: Sequence[RunRecord]) -> RunRecord | None:
    """The run with the median work time: its timeline stands for the variant."""
    timed = sorted((r for r in runs if r.timeline), key=lambda r: r.metrics.get("work_s", 0.0))
    return timed[len(timed) // 2] if timed else None


# The phases of a user's command or service drawn on its timeline (issue 11).
PHASES = ("ready", "warmup_start", "load_start", "load_end", "settle", "stop", "exit")
# Per run kind: the metric of the hatched memory bar and of the right-hand bars.
SECOND_BARS: dict[str, tuple[str, str, str, str]] = {
    "workload": ("rss_retained", "retained", "cpu_s", "CPU time of the work, s"),
    "command": ("rss_end", "at the end", "work_s", "wall time, s"),
    "service": ("rss_retained", "retained", "rps", "throughput, req/s"),
}


def _aligned_target(run: RunRecord) -> tuple[list[float], list[float], dict[str, float]]:
    """A service's timeline in seconds since its load started (a command's since it
    started), every phase mark kept, the whole tree's RSS in MiB."""
    start = next((m.t for m in run.marks if m.event == "load_start"), 0.0)
    xs = [t - start for t, _ in run.timeline]
    ys = [rss / MB for _, rss in run.timeline]
    phases: dict[str, float] = {}
    for m in run.marks:
        if m.event in PHASES:
            after = "" if m.info.after_s is None else f"{m.info.after_s:g}"
            key = m.event if m.event != "settle" else f"settle {after}s"
            phases[key] = m.t - start
    return xs, ys, phases


def _aligned(run: RunRecord) -> tuple[list[float], list[float], dict[str, float]]:
    """Timeline in seconds since the work started, MiB, up to the last settle reading
    (the purge after it is an intervention, not the allocator's own behaviour)."""
    if run.kind != "workload":
        return _aligned_target(run)
    start = next((m.t for m in run.marks if m.event == "work_start"), 0.0)
    settled = [m.t for m in run.marks if m.event in ("freed", "settle")]
    end = settled[-1] if settled else float("inf")
    kept = [(t, rss) for t, rss in run.timeline if t <= end]
    xs = [t - start for t, _ in kept]
    ys = [rss / MB for _, rss in kept]
    phases = {m.event: m.t - start for m in run.marks if m.event in ("work_end", "freed")}
    return xs, ys, phases


def _error(iv: Interval | None, divisor: float) -> tuple[float, float, float]:
    """Median and the distances to its interval's ends (error bars are intervals)."""
    if iv is None:
        return 0.0, 0.0, 0.0
    return iv.median / divisor, (iv.median - iv.low) / divisor, (iv.high - iv.median) / divisor


def _verdicts(
    ax: Any,
    results: Results,
    workload: str,
    shown: list[str],
    xs: list[float],
    tops: list[float],
    metric: str,
) -> None:
    """'0.15x sig' above each bar: the ratio to the baseline and its verdict."""
    for x, top, variant in zip(xs, tops, shown, strict=True):
        c = results.comparison(workload, variant, metric)
        if c is not None:
            ax.annotate(
                f"{c.ratio:.2f}x {c.short}",
                (x, top),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
            )


def figure(results: Results) -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ChartUnavailable("charts need matplotlib: pip install 'allocscope[report]'") from e

    workloads = results.workloads()
    variants = results.variant_names()
    colors = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}
    fig, axes = plt.subplots(
        len(workloads),
        3,
        figsize=(17, 4.2 * max(1, len(workloads))),
        squeeze=False,
        gridspec_kw={"width_ratios": (2.2, 1.3, 1)},
    )
    for row, workload in zip(axes, workloads, strict=True):
        _timelines(row[0], results, workload, variants, colors)
        _bars(row[1], row[2], results, workload, variants, colors)
    fig.suptitle(_title(results), fontsize=11)
    fig.tight_layout()
    return fig


def _title(results: Results) -> str:
    h = results.host
    bits = [f"allocscope {results.allocscope_version}".strip(), results.created]
    bits += [h.cpu_model] if h.cpu_model else []
    if h.cpus_usable:
        bits.append(f"{h.cpus_usable} CPUs")
    if h.thp_enabled:
        bits.append(f"THP {h.thp_enabled}")
    if h.python:
        bits.append(f"Python {h.python}")
    return " · ".join(b for b in bits if b)


def _timelines(
    ax: Any, results: Results, workload: str, variants: list[str], colors: dict[str, Any]
) -> None:
    drawn = False
    target = False
    for variant in variants:
        run = representative(results.counted(workload, variant))
        if run is None:
            continue
        xs, ys, phases = _aligned(run)
        ax.plot(xs, ys, label=variant, color=colors[variant], linewidth=1.4)
        if run.kind != "workload":
            target = True
            _phase_lines(ax, phases, colors[variant], label=not drawn)
        elif "freed" in phases:
            y = run.metrics.get("rss_freed", 0.0) / MB
            ax.plot([phases["freed"]], [y], marker="o", color=colors[variant], markersize=4)
        drawn = True
    if target:
        ax.set_title(f"{workload}: process tree RSS over time, phases marked", fontsize=10)
        ax.set_xlabel("seconds since the load started (a command: since it started)")
    else:
        ax.set_title(f"{workload}: RSS over time (dot: everything freed)", fontsize=10)
        ax.set_xlabel("seconds since the work started")
    ax.set_ylabel("RSS (MiB)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no timeline in this file", ha="center", transform=ax.transAxes)


def _phase_lines(ax: Any, phases: dict[str, float], color: Any, *, label: bool) -> None:
    """Dotted lines at each phase boundary; the load itself shaded; names on the first."""
    if "load_start" in phases and "load_end" in phases:
        ax.axvspan(phases["load_start"], phases["load_end"], color=color, alpha=0.06)
    for name, x in phases.items():
        ax.axvline(x, color=color, linestyle=":", linewidth=0.8, alpha=0.7)
        if label:
            ax.text(
                x,
                1.0,
                name.replace("_", " "),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                transform=ax.get_xaxis_transform(),
            )


def _bars(
    ax_mem: Any,
    ax_time: Any,
    results: Results,
    workload: str,
    variants: list[str],
    colors: dict[str, Any],
) -> None:
    shown = [v for v in variants if results.counted(workload, v)]
    xs = list(range(len(shown)))
    width = 0.4
    kind = kind_of(results, workload)
    kept, kept_label, right, right_title = SECOND_BARS.get(kind, SECOND_BARS["workload"])
    tops: list[float] = []
    for offset, metric, label, hatch in (
        (-width / 2, "rss_peak", "peak", ""),
        (width / 2, kept, kept_label, "//"),
    ):
        vals = [_error(results.interval(workload, v, metric), MB) for v in shown]
        ax_mem.bar(
            [x + offset for x in xs],
            [v[0] for v in vals],
            width,
            yerr=([v[1] for v in vals], [v[2] for v in vals]),
            color=[colors[v] for v in shown],
            hatch=hatch,
            edgecolor="black",
            linewidth=0.5,
            label=label,
        )
        ends = [v[0] + v[2] for v in vals]
        _verdicts(ax_mem, results, workload, shown, [x + offset for x in xs], ends, metric)
        tops += ends
    ax_mem.set_title(f"peak and {kept_label} RSS (hatched), MiB; ratio to baseline", fontsize=10)
    tops_mem = tops
    times = [_error(results.interval(workload, v, right), 1.0) for v in shown]
    ax_time.bar(
        xs,
        [t[0] for t in times],
        0.6,
        yerr=([t[1] for t in times], [t[2] for t in times]),
        color=[colors[v] for v in shown],
        edgecolor="black",
        linewidth=0.5,
    )
    tops = [t[0] + t[2] for t in times]
    _verdicts(ax_time, results, workload, shown, [float(x) for x in xs], tops, right)
    for ax, ends in ((ax_mem, tops_mem), (ax_time, tops)):
        ax.set_ylim(top=max(ends, default=0.0) * 1.35 or 1.0)  # room for the verdicts
    ax_time.set_title(f"{right_title} (bars: 99% intervals)", fontsize=10)
    for ax in (ax_mem, ax_time):
        ax.set_xticks(xs)
        ax.set_xticklabels(shown, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)


def write(results: Results, stem: str, formats: Sequence[str] = FORMATS) -> list[str]:
    """Draw once, save as ``stem.png`` and ``stem.svg``; return the paths written."""
    fig = figure(results)
    import matplotlib.pyplot as plt

    paths = []
    try:
        for fmt in formats:
            path = f"{stem}.{fmt}"
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with userfile.replacing(path, binary=True) as f:
                fig.savefig(f, format=fmt, dpi=110)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths
