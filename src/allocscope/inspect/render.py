"""Readable pages and timeline lines for inspect's records (rendering only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allocscope.inspect.report import ProcessReport
from allocscope.probe.memory import mib

if TYPE_CHECKING:
    from allocscope.inspect.attach import AttachReport


def _short(container_id: str | None) -> str:
    return container_id[:12] if container_id else "host"


def render(r: ProcessReport, grouped: bool = False) -> str:
    box = r.container
    where = (
        f"  container {_short(box.container_id)}" if box and (grouped or box.container_id) else ""
    )
    lines = [f"pid {r.pid}  {r.command}  ({r.exe or 'exe unknown'}){where}"]
    if r.cmdline:
        lines.append(f"  cmdline     {' '.join(r.cmdline)[:160].replace(chr(10), ' ')}")
    a = r.allocator
    if a is not None:
        lines.append(f"  allocator   {a.label}  {a.path or ''}  [{a.marker or 'unconfirmed'}]")
        if a.emulated:
            lines.append(f"  emulated    {a.emulated}")
        if a.conflict:
            lines.append(f"  FAIL        {a.conflict}")
        for p in a.preload:
            lines.append(f"  {'preload':<11} {p.entry}  {p.verdict}")
        if r.jemalloc_background_threads is not None:
            lines.append(f"  background  {r.jemalloc_background_threads} jemalloc_bg_thd threads")
        if a.declared:
            lines += [
                f"  {'declared':<11} {key}={value}"
                for key, value in a.declared.set_variables()
                if key != "LD_PRELOAD"  # each entry is explained above
            ]
    m = r.memory.process
    if m is not None:
        lines.append(
            f"  memory      rss {mib(m.rss_bytes)}, pss {mib(m.pss_bytes)}, "
            f"uss {mib(m.uss_bytes)}, anon {mib(m.anon_rss_bytes)}, "
            f"file {mib(m.file_rss_bytes)}, swap {mib(m.swap_bytes)}, "
            f"thp {mib(m.anon_huge_pages_bytes)}"
        )
    g = r.memory.glibc
    if g is not None:
        lines.append(
            f"  glibc heap  main {mib(g.main_heap_bytes)}, "
            f"{g.arena_heaps} arena heaps {mib(g.arena_heap_bytes)}"
        )
        if g.main_heap_resident_bytes is not None and g.arena_heap_resident_bytes is not None:
            estimate = r.memory.glibc_fragmentation_estimate
            share = f"{estimate:.0%} of anon RSS" if estimate is not None else "anon RSS n/a"
            lines.append(
                f"  heap rss    {mib(g.main_heap_resident_bytes + g.arena_heap_resident_bytes)}"
                f" resident ({share}; fragmentation estimate: at most this is free)"
            )
    lines.append(f"  counters    {r.memory.allocator_counters}")
    c = r.crypto
    if c is not None:
        kernel = {True: "1", False: "0", None: "n/a"}[c.kernel_fips_enabled]
        lines.append(
            f"  crypto      libcrypto {c.libcrypto or 'not mapped'}, "
            f"fips.so {c.fips_provider or 'not mapped'}, kernel fips_enabled {kernel}"
        )
        for key, value in (
            ("OPENSSL_CONF", c.openssl_conf),
            ("OPENSSL_MODULES", c.openssl_modules),
        ):
            if value is not None:
                lines.append(f"  {'declared':<11} {key}={value}")
    if box is not None:
        limit = mib(box.memory_max_bytes) if box.memory_max_bytes is not None else "no limit"
        lines.append(
            f"  cgroup      {box.cgroup}  memory {mib(box.memory_current_bytes)} of {limit}"
        )
    k = r.kubernetes
    if k is not None:
        lines.append(
            f"  kubernetes  {k.namespace or '?'}/{k.pod or '?'} container {k.container or '?'}"
            f" (workload {k.workload or '?'}, uid {k.pod_uid}, qos {k.qos or '?'})"
        )
    lines += [f"  unknown     {u.part}: {u.reason}" for u in r.unknowns]
    if a is not None:
        lines += [f"  warning     {w}" for w in a.warnings]
    return "\n".join(lines)


def timeline_line(r: ProcessReport) -> str:
    m = r.memory.process
    g = r.memory.glibc
    heaps = (
        f" heaps {g.arena_heaps}+main {mib(g.main_heap_bytes + g.arena_heap_bytes)}" if g else ""
    )
    rss = (
        f"rss {mib(m.rss_bytes)} pss {mib(m.pss_bytes)} anon {mib(m.anon_rss_bytes)}"
        if m
        else "memory n/a"
    )
    label = r.allocator.label if r.allocator else "allocator unknown"
    fail = " FAIL two allocators" if r.failed else ""
    return f"{r.time} pid {r.pid} {r.command} {label} {rss}{heaps}{fail}"


def render_attach(a: AttachReport) -> str:
    snap, py, v = a.snapshot, a.python, a.verdict
    alloc = snap["allocator"]
    lines = [
        f"  attach      {a.round_trip_seconds * 1000:.0f} ms round trip via {a.path} "
        f"({a.mechanism})",
        f"  inside      {alloc['name']} {alloc['version'] or ''} serves malloc "
        f"(confirmed by {alloc['confirmed_by'] or 'nothing'}), fips {snap['fips']['state']}",
    ]
    if snap.get("jemalloc"):
        s = snap["jemalloc"]["stats"]
        lines.append(
            f"  jemalloc    allocated {mib(s['allocated'])}, active {mib(s['active'])}, "
            f"resident {mib(s['resident'])}, retained {mib(s['retained'])}, "
            f"{s['narenas']} arenas"
        )
    if snap.get("glibc"):
        g = snap["glibc"]
        lines.append(
            f"  mallinfo2   in use {mib(g['in_use_bytes'])}, free in its books "
            f"{mib(g['free_bytes'])} (trimmed pages included), mmap {mib(g['mmap_bytes'])}, "
            f"arenas {g['arenas']}"
        )
    h = snap.get("held")
    if h and h.get("free_bytes") is not None:
        lines.append(
            f"  held        in use {mib(h['in_use_bytes'])}, free and resident "
            f"{mib(h['free_bytes'])}, releasable {mib(h['releasable_bytes'])} ({h['source']})"
        )
    traced = (
        f", tracemalloc {mib(py['tracemalloc_current_bytes'])}"
        if py["tracemalloc_tracing"]
        else ", tracemalloc off"
    )
    lines.append(
        f"  python      {py['version']}: {py['allocated_blocks']} blocks, gc counts "
        f"{py['gc_counts']}, {py['gc_tracked_objects']} tracked objects{traced}"
    )
    lines.append(f"  verdict     {v.sentence} (process anon RSS {mib(v.held_bytes)})")
    lines += [f"  warning     {w}" for w in snap.get("warnings") or ()]  # e.g. lost at fork
    if a.trim is not None:
        t = a.trim
        lines.append(
            f"  trim        {t.action}: rss {mib(t.rss_before_bytes)} -> "
            f"{mib(t.rss_after_bytes)}, returned {mib(t.returned_bytes)}, "
            f"in use after {mib(t.in_use_after_bytes)}"
        )
        if t.verdict is not None:
            lines.append(f"  after trim  {t.verdict.sentence}")
    return "\n".join(lines)
