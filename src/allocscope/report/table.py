"""The comparison table: per workload, one row per variant, ratios against glibc.

One model (:func:`tables`) and three renderings: markdown, plain text (no third-party
imports: the runtime image has no rich) and rich for the terminal.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from allocscope.bench.analysis.stats import CONFIDENCE, MIN_EFFECT, MIN_RUNS, Comparison, Interval
from allocscope.bench.record import RunRecord
from allocscope.bench.results import MB, Results

if TYPE_CHECKING:
    from rich.table import Table as RichTable

# (metric, heading, unit divisor, decimals, ratio against the baseline)
COLUMNS: tuple[tuple[str, str, float, int, bool], ...] = (
    ("rss_peak", "peak MiB", MB, 1, True),
    ("rss_retained", "retained MiB", MB, 1, True),
    ("rss_kept", "kept MiB", MB, 1, True),
    ("cpu_s", "cpu s", 1.0, 3, True),
    ("work_s", "wall s", 1.0, 3, False),
)
# A user's command or service (run kinds other than "workload") has its own figures.
COLUMNS_BY_KIND: dict[str, tuple[tuple[str, str, float, int, bool], ...]] = {
    "command": (
        ("rss_peak", "peak MiB", MB, 1, True),
        ("rss_end", "end MiB", MB, 1, True),
        ("pss_peak", "peak PSS MiB", MB, 1, False),
        ("cpu_s", "cpu s", 1.0, 2, True),  # the ratio the time verdict judges
        ("work_s", "wall s", 1.0, 2, False),  # shown, never judged: others stretch it
    ),
    "service": (
        ("rps", "req/s", 1.0, 0, True),
        ("p50_ms", "p50 ms", 1.0, 1, False),
        ("p99_ms", "p99 ms", 1.0, 1, True),
        ("rss_peak", "peak MiB", MB, 1, True),
        ("rss_retained", "retained MiB", MB, 1, True),
        ("error_count", "errors", 1.0, 0, False),
    ),
}
MISSING = "—"
ONE_RUN = "one run: no interval, no verdict"
# What each kind of table's plain-words line judges: (metric, words).
HEADLINES: dict[str, tuple[tuple[str, str], ...]] = {
    "command": (("rss_peak", "peak memory (RSS of the whole tree)"), ("cpu_s", "CPU time")),
    "service": (
        ("rss_retained", "memory retained after the load"),
        ("rps", "throughput"),
        ("p99_ms", "p99 latency"),
    ),
}


def kind_of(results: Results, workload: str) -> str:
    return next((r.kind for r in results.runs if r.workload == workload), "workload")


def columns(results: Results, workload: str) -> tuple[tuple[str, str, float, int, bool], ...]:
    return COLUMNS_BY_KIND.get(kind_of(results, workload), COLUMNS)


def growth_cell(runs: list[RunRecord]) -> str:
    """'+2.71 ±0.12/10k +605 ±45/h growing': the first run's fits, ± 2 standard errors."""
    for run in runs:
        growth = run.evidence.growth if run.evidence else None
        if growth is None or growth.verdict is None:
            continue
        parts = [
            f"{fit.slope:+.{decimals}f} ±{2 * fit.stderr:.{decimals}f}{unit}"
            for fit, unit, decimals in (
                (growth.per_10k_requests, "/10k", 2),
                (growth.per_hour, "/h", 0),
            )
            if fit is not None
        ]
        return " ".join([*parts, growth.verdict])
    return MISSING


@dataclass(frozen=True)
class Table:
    workload: str
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str]  # failures
    meaning: list[str] = field(default_factory=list)  # "what this means", in plain words


def _cell(iv: Interval | None, divisor: float, decimals: int) -> str:
    if iv is None:
        return MISSING
    if iv.median < 0:  # kept RSS below the RSS before the work: see _below_start
        return f"{iv.median / divisor:.{decimals}f} (below start)"
    spread = f" ±{iv.half_width * 100:.0f}%" if iv.n > 1 else ""
    return f"{iv.median / divisor:.{decimals}f}{spread}"


def _ratio(c: Comparison | None, is_base: bool, divisor: float = 1.0) -> str:
    if is_base:
        return "1.00x"
    if c is None:
        return MISSING
    if c.single:  # an interval of width zero would read as certain
        return f"{c.ratio:.2f}x one run"
    if not c.ratio_meaningful:  # 0.1 MiB against 1.1 MiB is no ratio: say the difference
        return f"{c.difference / divisor:+.1f} MiB {c.short}"
    return f"{c.ratio:.2f}x [{c.low:.2f}-{c.high:.2f}] {c.short}"


def _detected(results: Results, workload: str, variant: str) -> str:
    for run in results.counted(workload, variant):
        if run.detected:
            return run.detected
    spec = results.variant(variant)
    return f"({spec.allocator if spec and spec.allocator is not None else '?'})"


def _settle_words(results: Results) -> str:
    settle = results.config.settle_s or ()
    if settle:
        return f"RSS {settle[-1]:g} s after everything was freed"
    return "RSS after everything was freed"


def tables(results: Results) -> list[Table]:
    base = results.baseline()
    out = []
    for workload in results.workloads():
        header = ["variant", "allocator", "runs"]
        cols = columns(results, workload)
        service = kind_of(results, workload) == "service"
        for _, heading, _, _, ratio in cols:
            header.append(heading)
            if ratio and base:
                header.append(f"x{base}")
        if service:
            header.append("growth MiB")
        rows = []
        for variant in results.variant_names():
            tried = [r for r in results.runs if r.workload == workload and r.variant == variant]
            measured = [r for r in tried if r.repeat > 0]
            if not tried:
                continue
            counted = results.counted(workload, variant)
            busy = sum(1 for r in counted if r.noise and r.noise.marked)
            row = [
                variant,
                _detected(results, workload, variant),
                f"{len(counted)}/{len(measured)}" + (f" ({busy} busy)" if busy else ""),
            ]
            for metric, _, divisor, decimals, ratio in cols:
                row.append(_cell(results.interval(workload, variant, metric), divisor, decimals))
                if ratio and base:
                    c = results.comparison(workload, variant, metric)
                    row.append(_ratio(c, variant == base and bool(counted), divisor))
            if service:
                row.append(growth_cell(counted))
            rows.append(row)
        params = results.config.params(workload)
        title = workload if not params else f"{workload} ({_params(params)})"
        meaning = [m for m in [what_this_means(results, workload), _searched(results)] if m]
        out.append(Table(workload, title, header, rows, _notes(results, workload), meaning))
    return out


def _searched(results: Results) -> str | None:
    """A tune's decision, as its search made it (the table above is its runs, every
    candidate's however few: the search judged them round by round)."""
    search = results.session.tune
    if search is None:
        return None
    what = f"allocscope tune ({len(search.candidates)} candidates, objective {search.objective})"
    if search.decision is None:
        return f"{what}: the search did not finish; no decision (tune --resume finishes it)"
    if search.decision.recommendation is None:
        return f"{what}: {search.decision.reason}"
    return f"{what} recommends {search.decision.reason}"


def _less_or_more(ratio: float, words: tuple[str, str] = ("less", "more")) -> str:
    pct = abs(1 - ratio) * 100
    return f"{pct:.0f}% {words[0] if ratio < 1 else words[1]}"


def _judged(measure: str, words: str, c: Comparison | None, base: str) -> str:
    """One measure's comparison in plain words ('CPU time 12% less (significant)')."""
    if c is None:
        return f"{words}: no figure"
    if c.verdict == "significant":
        scale = ("lower", "higher") if measure in ("rps", "p99_ms") else ("less", "more")
        return f"{words} {_less_or_more(c.ratio, scale)} (significant)"
    if c.verdict == "below floor":
        return f"{words} differs by {abs(c.difference) / MB:.1f} MiB: under the floor"
    if c.verdict == "too few runs":
        return f"{words}: too few runs"
    return f"{words} is within noise of {base}'s"


def what_this_means(results: Results, workload: str) -> str | None:
    """The headline in plain words: memory and CPU time (workloads, commands), or memory,
    throughput and p99 (services), of each variant against the baseline."""
    base = results.baseline()
    if base is None or not results.counted(workload, base):
        return None
    kind = kind_of(results, workload)
    if kind == "workload":
        return _workload_headline(results, workload, base)
    measures = HEADLINES[kind]
    others = [v for v in results.variant_names() if v != base and results.counted(workload, v)]
    if not others:
        return None
    found = {v: {m: results.comparison(workload, v, m) for m, _ in measures} for v in others}
    every = [c for by in found.values() for c in by.values() if c is not None]
    if every and all(c.single for c in every):
        return f"{ONE_RUN} (run each variant {MIN_RUNS} times: --repeats {MIN_RUNS})"
    if every and all(c.verdict == "too few runs" for c in every):
        return f"too few runs for a verdict ({MIN_RUNS} of each are needed)"
    parts = [
        f"{v} against {base}: "
        + ", ".join(_judged(m, words, found[v][m], base) for m, words in measures)
        for v in others
    ]
    return "; ".join(parts)  # the table's title names the command


def _workload_headline(results: Results, workload: str, base: str) -> str | None:
    """The variant that changes retained memory the most (a table of many variants)."""
    found = [
        (c, v)
        for v in results.variant_names()
        if (c := results.comparison(workload, v, "rss_retained")) is not None
    ]
    # The largest significant saving; without one, the largest significant cost.
    real = sorted(
        (c.ratio < 1, abs(1 - c.ratio), v, c) for c, v in found if c.verdict == "significant"
    )
    if not real:
        if not found:
            return None
        if all(c.verdict == "too few runs" for c, _ in found):
            return f"{workload}: too few runs for a verdict ({MIN_RUNS} of each are needed)"
        return f"{workload}: no variant's memory after the work differs from {base}'s beyond noise"
    *_, best, c = real[-1]
    words = (
        f"{workload}: {best} keeps {_less_or_more(c.ratio)} memory than {base} after the "
        f"work ends (retained RSS, significant)"
    )
    cpu = results.comparison(workload, best, "cpu_s")
    if cpu is None:
        return words
    return f"{words}; its " + _judged("cpu_s", "CPU time", cpu, base)


def _below_start(results: Results, workload: str) -> list[str]:
    """A negative kept RSS, in words rather than as a bare negative number."""
    notes = []
    for variant in results.variant_names():
        iv = results.interval(workload, variant, "rss_kept")
        if iv is not None and iv.median < 0:
            notes.append(
                f"{variant}: kept {iv.median / MB:.1f} MiB: below its pre-work RSS: the "
                "allocator returned memory it held before the work (nothing the work "
                "allocated is kept)"
            )
    return notes


def _params(params: dict[str, Any]) -> str:
    keys = ("threads", "iters", "size", "keep", "rounds")
    return ", ".join(f"{k} {params[k]}" for k in keys if k in params)


def _notes(results: Results, workload: str) -> list[str]:
    notes = _below_start(results, workload)
    for run in results.failed():
        if run.workload == workload:
            which = "warm-up" if run.repeat == 0 else f"run {run.repeat}"
            notes.append(f"FAILED {run.variant} {which}: {'; '.join(run.failures)}")
    said: dict[tuple[str, str], list[str]] = {}  # the same note of every run, said once
    for run in results.runs:
        warnings = run.evidence.warnings if run.evidence else ()
        if run.workload == workload and warnings:
            which = "warm-up" if run.repeat == 0 else str(run.repeat)
            said.setdefault((run.variant, "; ".join(warnings)), []).append(which)
    for (variant, text), runs in said.items():
        notes.append(f"NOTE {variant} run{'s' if len(runs) > 1 else ''} {', '.join(runs)}: {text}")
    return notes


def legend(results: Results) -> list[str]:
    base = results.baseline()
    kinds = {r.kind for r in results.runs}
    lines = [
        "median of the runs that proved their allocator; ± is the half-width of the median's "
        f"{CONFIDENCE:.0%} interval (bootstrap, seed {results.seed}); "
        + (
            f"retained is {_settle_words(results)}; kept is retained minus the RSS before the work"
            if "workload" in kinds or not kinds
            else "RSS is of the whole process tree"
        )
    ]
    if "service" in kinds:
        lines.append(
            "retained: tree RSS at the last --settle point after the load; growth: slope of "
            "tree RSS during the load per 10k requests and per hour, ± 2 standard errors, "
            "and its verdict"
        )
    if base:
        lines.append(
            f"x{base}: ratio of medians to {base}, [{CONFIDENCE:.0%} interval], verdict: "
            "sig = significant (the whole interval is at least "
            f"{MIN_EFFECT['memory']:.0%} from 1 for memory, {MIN_EFFECT['time']:.0%} for time, "
            "and a rank test agrees), "
            f"noise = within noise, n<{MIN_RUNS} = too few runs for a verdict, "
            "<floor = a memory difference under max(2 MiB, 3% of the baseline's RSS) "
            "(one allocator unit on each side: never a decision); on a baseline under that "
            "floor the difference in MiB is shown instead of a ratio; 'one run' = no interval, "
            "no verdict"
        )
        lines.append(
            "verdicts on memory use retained (and peak) RSS: what the process holds; on time, "
            "CPU time of the work: other processes stretch wall time, not our CPU time "
            "(wall time is shown without a ratio)"
        )
    lines += [
        f"unavailable: {v.name}: {v.unavailable or 'not available'}" for v in results.unavailable()
    ]
    lines += _noise_lines(results)
    if results.migrated_from is not None:
        fewer = " (fewer fields)" if results.migrated_from < 2 else ""
        lines.append(f"read from a version-{results.migrated_from} file{fewer}")
    return lines


def _noise_lines(results: Results) -> list[str]:
    out = []
    busy = results.host.busy_before()
    if busy:
        out.append(
            f"the machine was busy before this run started (load {busy[0]:g} on {busy[1]} "
            "CPUs): wall times are noisy; cpu s is steadier"
        )
    session = results.session
    measured = [r for r in results.runs if r.repeat > 0 and r.noise is not None]
    if measured:
        marked = sum(1 for r in measured if r.noise and r.noise.marked)
        out.append(
            f"noise: {marked} of {len(measured)} measured runs were busy (other processes "
            "used a quarter of the CPUs or more, the hypervisor stole 5%, or the load was "
            "3 per CPU or more)"
        )
    noise = session.noise
    if noise is not None:
        named = ", ".join(noise.busy) or "none"
        out.append(
            f"session: other processes used {noise.other_cpu:g} CPUs on average, "
            f"steal {noise.steal:.1%}; busiest: {named}"
        )
    chosen = results.config.repeats_default
    if chosen is not None:
        out.append(
            f"runs: {chosen.runs} of each variant by default, interleaved (the fewest "
            "that give an interval and a verdict); after a run of "
            f"{chosen.long_run_s:g} s or more, only the rounds that fit a "
            f"{chosen.budget_s:g} s budget"
        )
    if session.repeats_stopped:
        out.append(f"runs: stopped at {session.repeats_stopped}")
    if session.repeats_auto is not None:
        out += [f"--repeats auto, {w}: stopped: {why}" for w, why in session.repeats_auto.items()]
    if session.interrupted:
        out.append(f"stopped by {session.interrupted}: only the runs done before it count")
    return out


def markdown(results: Results) -> str:
    parts = []
    for t in tables(results):
        parts.append(f"### {t.title}\n")
        parts.append("| " + " | ".join(t.header) + " |")
        parts.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(t.header))) + "|")
        parts += ["| " + " | ".join(row) + " |" for row in t.rows]
        parts += [""] + [f"**What this means:** {m}" for m in t.meaning]
        parts += ([""] if t.meaning else []) + [f"- {n}" for n in t.notes]
        parts += [""] if t.notes else []
    parts += [f"_{line}_" for line in legend(results)]
    return "\n".join(parts).strip() + "\n"


def text(results: Results) -> str:
    """Fixed-width text, for terminals without rich."""
    out = []
    for t in tables(results):
        widths = [max(len(r[i]) for r in [t.header, *t.rows]) for i in range(len(t.header))]

        def line(cells: list[str], widths: list[int] = widths) -> str:
            return "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        out += [t.title, line(t.header), line(["-" * w for w in widths])]
        out += [line(row) for row in t.rows]
        out += [f"what this means: {m}" for m in t.meaning] + t.notes + [""]
    return "\n".join(out + legend(results))


def width(results: Results) -> int:
    """Columns the widest table needs (rich adds 3 per column and 1 for the border)."""
    needed = 80
    for t in tables(results):
        cells = [t.header, *t.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(t.header))]
        needed = max(needed, sum(widths) + 3 * len(widths) + 1)
    return needed


def rich_tables(results: Results) -> list[RichTable]:
    from rich.table import Table as RichTable
    from rich.text import Text

    rendered = []
    for t in tables(results):
        # Text, never markup: a user's command ("python -c '[...]'") or variant name may hold
        # brackets that rich would take for style tags and drop.
        table = RichTable(title=Text(t.title), title_justify="left", caption_justify="left")
        for i, heading in enumerate(t.header):
            table.add_column(Text(heading), justify="left" if i < 2 else "right", no_wrap=i == 0)
        for row in t.rows:
            table.add_row(*(Text(cell) for cell in row))
        caption = Text("\n".join(f"what this means: {m}" for m in t.meaning), style="bold")
        if t.notes:  # Text: never markup
            caption.append(("\n" if t.meaning else "") + "\n".join(t.notes), style="red")
        if caption:
            table.caption = caption
        rendered.append(table)
    return rendered


def print_terminal(results: Results) -> None:
    """Rich when it is installed, plain text otherwise."""
    try:
        from rich.console import Console
    except ImportError:
        print(text(results))
        return
    console = Console()
    # Never squeeze numbers into ellipses: a narrow terminal wraps the lines instead.
    console.width = max(console.width if sys.stdout.isatty() else 0, width(results))
    for table in rich_tables(results):
        console.print(table)
    for line in legend(results):
        console.print(line, style="dim", highlight=False, markup=False)
