"""The fleet audit as text, JSON, Markdown or CSV (rendering only)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from allocscope.fleet.audit import Audit, Workload

SCHEMA = "allocscope.fleet/1"


def _mib(n: float | None, sign: bool = False) -> str:
    return "n/a" if n is None else f"{n / 2**20:{'+' if sign else ''}.1f} MiB"


def _title(w: Workload) -> str:
    return f"{w.where}/{w.name}" if w.kind == "kubernetes" else f"{w.where} (host) {w.name}"


def _threads(w: Workload) -> str:
    jemalloc = [p for p in w.processes if p.background_threads is not None]
    if not jemalloc:
        return "n/a (no jemalloc)"
    running = sum(1 for p in jemalloc if p.background_threads)
    return f"{running} of {len(jemalloc)} jemalloc processes run it"


def _fips(w: Workload) -> str:
    crypto = [p for p in w.processes if p.libcrypto]
    if not crypto:
        return "no libcrypto mapped"
    return f"fips.so mapped in {sum(1 for p in crypto if p.fips_provider)} of {len(crypto)}"


def _row(w: Workload) -> dict[str, str]:
    fragmentation = w.fragmentation
    return {
        "allocators": ", ".join(f"{name} x{n}" for name, n in w.allocators().items()),
        "background": _threads(w),
        "fips": _fips(w),
        "rss": _mib(w.rss_bytes),
        "growth": _mib(w.growth_bytes, sign=True),
        "fragmentation": "n/a" if fragmentation is None else f"{fragmentation:.0%}",
    }


def text(a: Audit) -> str:
    n = sum(len(w.processes) for w in a.workloads)
    lines = [
        f"allocscope fleet: {len(a.nodes)} nodes, {len(a.workloads)} workloads, {n} processes"
        f" ({a.prometheus}, growth over {a.expect.window}"
        + (f", namespace {a.namespace}" if a.namespace is not None else "")
        + ")"
    ]
    for w in a.workloads:
        n = len(w.pods)
        pods = f"  {n} pod{'s' if n != 1 else ''}: {', '.join(w.pods)}" if w.pods else ""
        lines += ["", f"{_title(w)}{pods}"]
        lines += [f"  {key:<13} {value}" for key, value in _row(w).items()]
        for f in w.findings:
            lines.append(f"  FINDING       {f.kind}: {f.says} [{', '.join(f.pids)}]")
            lines.append(f"    do          {f.do}")
    found = a.findings()
    lines += ["", f"{len(found)} findings" + (": " if found else "")
              + ", ".join(sorted({f.kind for _, f in found}))]  # fmt: skip
    return "\n".join(lines)


def as_json(a: Audit) -> str:
    return json.dumps(
        {
            "schema": SCHEMA,
            "prometheus": a.prometheus,
            "namespace": a.namespace,
            "expect": dataclasses.asdict(a.expect),
            "nodes": list(a.nodes),
            "workloads": [
                {
                    "kind": w.kind,
                    "where": w.where,
                    "name": w.name,
                    "pods": w.pods,
                    "allocators": w.allocators(),
                    "rss_bytes": w.rss_bytes,
                    "growth_bytes": w.growth_bytes,
                    "fragmentation_estimate": w.fragmentation,
                    "processes": [dataclasses.asdict(p) for p in w.processes],
                    "findings": [dataclasses.asdict(f) for f in w.findings],
                }
                for w in a.workloads
            ],
        },
        indent=2,
    )


def markdown(a: Audit) -> str:
    head = ["workload", "pods", *_row(a.workloads[0]).keys(), "findings"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in a.workloads:
        cells = [_title(w), str(len(w.pods)), *_row(w).values(),
                 "; ".join(f.kind for f in w.findings) or "none"]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    found = a.findings()
    if found:
        lines += ["", "### What to do", ""]
        lines += [
            f"- **{_title(w)}**, {f.kind}: {f.says} ({', '.join(f.pids)}). {f.do}" for w, f in found
        ]
    return "\n".join(lines)


def as_csv(a: Audit) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["kind", "where", "workload", "node", "pid", "pod", "container", "command",
                     "allocator", "version", "two_allocators", "background_threads",
                     "libcrypto", "fips_provider", "rss_bytes", "growth_bytes",
                     "fragmentation_estimate", "findings"])  # fmt: skip
    for w in a.workloads:
        for p in w.processes:
            kinds = ";".join(f.kind for f in w.findings if p.ref in f.pids)
            writer.writerow([
                w.kind, w.where, w.name, p.node, p.pid, p.pod, p.container, p.command,
                p.allocator, p.version, int(p.conflict),
                "" if p.background_threads is None else p.background_threads,
                int(p.libcrypto), int(p.fips_provider), int(p.rss_bytes),
                "" if p.growth_bytes is None else int(p.growth_bytes),
                "" if p.fragmentation is None else f"{p.fragmentation:.3f}", kinds,
            ])  # fmt: skip
    return out.getvalue()
