"""allocscope info: the snapshot, as JSON or as a readable page."""

from __future__ import annotations

import argparse
import json
import sys

from allocscope import exitcodes
from allocscope.probe import purge
from allocscope.probe.memory import mib
from allocscope.probe.schema import describe
from allocscope.probe.snapshot import SCHEMA, Snapshot, detect_allocator, snapshot

HELP = "print what this process runs on: allocator, heap, memory, FIPS"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretty", action="store_true", help="indent the JSON")
    parser.add_argument("--human", action="store_true", help="a readable page instead of JSON")
    parser.add_argument(
        "--purge",
        action="store_true",
        help="ask the allocator to return free memory to the OS first (jemalloc: all arenas)",
    )
    parser.add_argument("--schema", action="store_true", help="print the JSON schema and exit")
    parser.epilog = (
        "Exit codes: 0 ok, 1 two allocators are mapped at once (a failure). "
        "For another process use `allocscope inspect PID`."
    )


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(f"# {SCHEMA}")
        for path, kind in describe(Snapshot):
            print(f"{path:<42} {kind}")
        return exitcodes.OK
    detected = detect_allocator()
    if args.purge:
        print(purge.release(detected), file=sys.stderr)
    snap = snapshot(allocator=detected, prove=True)
    if args.human:
        print(render(snap))
    else:
        print(json.dumps(snap.to_dict(), indent=2 if args.pretty else None))
    if detected.conflict:
        print(f"allocscope info: FAIL {detected.conflict}", file=sys.stderr)
        return exitcodes.CHECK_FAILED
    return exitcodes.OK


def render(snap: Snapshot) -> str:
    a, f = snap.allocator, snap.fips
    lines = [
        f"allocator    {a.label}",
        *([f"  FAIL       {a.conflict}"] if a.conflict else []),
        f"  library    {a.path or 'unknown'}",
        f"  confirmed  {a.confirmed_by or 'no'}",
        f"  python     {a.python_allocator}",
    ]
    lines += [f"  {key:<17}{value}" for key, value in a.declared.set_variables()]
    if snap.jemalloc:
        s = snap.jemalloc.stats
        lines.append(
            f"jemalloc     allocated {mib(s.allocated)}, active {mib(s.active)}, "
            f"resident {mib(s.resident)}, retained {mib(s.retained)}, "
            f"{s.narenas} arenas, background thread {'on' if s.background_thread else 'off'}"
        )
        opts = snap.jemalloc.options
        lines.append("  options    " + ", ".join(f"{k}:{v}" for k, v in opts.items()))
        for k in snap.jemalloc.malloc_conf:
            lines.append(f"  conf {k.key:<18} {'in effect' if k.in_effect else k.reason}")
        lines += [f"  jemalloc said  {m}" for m in snap.jemalloc.conf_messages or ()]
    if snap.glibc:
        g = snap.glibc
        lines.append(
            f"glibc heap   in use {mib(g.in_use_bytes)}, free {mib(g.free_bytes)}, "
            f"mmap {mib(g.mmap_bytes)}, arenas {g.arenas if g.arenas is not None else 'n/a'}"
        )
    if snap.arena_limit:
        lines.append(f"  arena limit {snap.arena_limit.reason}")
    if snap.memory:
        m = snap.memory
        lines.append(
            f"memory       rss {mib(m.rss_bytes)}, peak {mib(m.peak_rss_bytes)}, "
            f"anon {mib(m.anon_rss_bytes)}, pss {mib(m.pss_bytes)}, uss {mib(m.uss_bytes)}"
        )
    lines.append(f"fips         {f.state}: {f.reason}")
    if f.openssl:
        lines.append(f"  openssl    {f.openssl.version} ({f.openssl.libcrypto})")
    lines.append(
        "  md5        "
        + ", ".join(
            f"{name} {'answered' if ok else 'refused'}"
            for name, ok in (
                ("hashlib.md5()", f.md5.hashlib_md5),
                ("hashlib.new('md5')", f.md5.hashlib_new_md5),
                ("built-in _md5", f.md5.builtin_md5),
            )
        )
    )
    r = snap.runtime
    lines.append(f"runtime      {r.implementation} {r.python_version} ({r.soabi}), pid {r.pid}")
    lines += [f"warning      {w}" for w in (*a.warnings, *snap.warnings)]
    lines += [f"error        {e}" for e in (*snap.errors, *f.errors)]
    return "\n".join(lines)
