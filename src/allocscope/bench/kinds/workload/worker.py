"""The benchmark child: ``python -m allocscope.bench.kinds.workload.worker SPEC --fd N``.

It proves its allocator, runs one workload, drops what the workload kept and waits
through the settle periods. At every phase boundary it sends one JSON line on fd ``N``
and waits for the parent's answer on stdin (``go`` or ``stop``), so the parent can read
the child's RSS from outside at exactly that moment. The last line is the result.

Messages (child -> parent), each ``{"event": ..., "t": CLOCK_MONOTONIC seconds, ...}``:

- ``ready``: ``protocol`` (:data:`~allocscope.bench.record.PROTOCOL`, checked by the
  runner), the proof (a :class:`~allocscope.bench.record.Proof`) and ``measure_pid``:
  the process whose RSS counts (a workload's server), or null for this one
- ``work_start``: set up and warmed up; the timed work begins after the answer
- ``work_end``: ``work_s`` (wall time of the work alone) and ``cpu_s``
- ``freed``: everything the workload kept is dropped and collected; ``free_s``
- ``settle``: ``after_s`` seconds after ``freed``
- ``purged``: after asking the allocator to return free memory (``--purge``)
- ``result``: allocator heap statistics at the end; then the child exits 0
- ``error``: the workload raised; the child exits 1
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import IO, Any

from allocscope.bench import workloads
from allocscope.bench.record import PROTOCOL, Proof
from allocscope.expectations import Expectations, check
from allocscope.probe import allocator as allocator_mod
from allocscope.probe import glibc, purge
from allocscope.probe.snapshot import Snapshot, jemalloc_report, snapshot


@dataclasses.dataclass(frozen=True)
class Spec:
    """What one child runs; sent as JSON on its command line."""

    workload: str
    params: workloads.Params
    expect: str  # the allocator that must serve malloc
    settle: tuple[float, ...] = (0.5, 2.0)
    purge: bool = True

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        doc = json.loads(text)
        return cls(
            workload=doc["workload"],
            params=workloads.Params(**doc["params"]),
            expect=doc["expect"],
            settle=tuple(float(s) for s in doc.get("settle", ())),
            purge=bool(doc.get("purge", True)),
        )


def proof(snap: Snapshot, expect: str) -> Proof:
    """What the child really runs on, and whether that is what the variant promised."""
    alloc = snap.allocator
    checks = tuple(check(snap, Expectations(allocator=expect, malloc_conf=True, preload=True)))
    je = snap.jemalloc
    return Proof(
        allocator=alloc.name,
        version=alloc.version,
        path=alloc.path,
        source=alloc.source,
        confirmed_by=alloc.confirmed_by,
        python_allocator=alloc.python_allocator,
        declared=dataclasses.asdict(alloc.declared),
        warnings=tuple(alloc.warnings),
        jemalloc_options=je.options if je else None,
        malloc_conf=[dataclasses.asdict(k) for k in je.malloc_conf] if je else None,
        checks=checks,
        ok=all(c.passed for c in checks),
    )


def heap(info: allocator_mod.AllocatorInfo) -> dict[str, Any] | None:
    """The allocator's own view at the end: jemalloc's stats or glibc's mallinfo2."""
    try:
        if info.name == "jemalloc":
            report = jemalloc_report(info)
            return dataclasses.asdict(report.stats) if report else None
        if info.name == "glibc":
            return dataclasses.asdict(glibc.heap())
    except OSError as e:
        return {"error": str(e)}
    return None


class Channel:
    """One JSON line out per event; for all but the last, wait for ``go`` on stdin."""

    def __init__(self, out: IO[str], answers: IO[str]) -> None:
        self._out = out
        self._answers = answers

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.monotonic(), **fields})
        self._out.write(line + "\n")
        self._out.flush()

    def mark(self, event: str, **fields: Any) -> None:
        self.send(event, **fields)
        answer = self._answers.readline().strip()
        if answer != "go":  # "stop", or EOF: the parent is gone or wants us gone
            raise SystemExit(0)


def run(spec: Spec, chan: Channel) -> None:
    module = workloads.load(spec.workload)
    snap = snapshot(prove=True)
    evidence = proof(snap, spec.expect)
    setup = getattr(module, "setup", None)
    teardown = getattr(module, "teardown", lambda: None)
    try:
        # A workload with a server of its own (http) names the process to measure, and
        # that process must prove its allocator as well.
        target = setup(spec.params, spec.expect) if setup is not None else None
        if target is not None:
            evidence = evidence.with_server(Proof.from_dict(target["proof"], "server proof"))
        chan.mark(
            "ready",
            protocol=PROTOCOL,
            proof=evidence.to_dict(),
            pid=os.getpid(),
            measure_pid=target["pid"] if target else None,
        )
        _measure(module, spec, chan, snap, purge_self=target is None)
    finally:
        teardown()


def _measure(module: Any, spec: Spec, chan: Channel, snap: Snapshot, *, purge_self: bool) -> None:
    warmup = getattr(module, "warmup", None)
    if warmup is not None:
        warmup(spec.params)
    gc.collect()
    chan.mark("work_start")

    wall, cpu = time.perf_counter(), time.process_time()
    held = module.run(spec.params)
    work_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    chan.mark("work_end", work_s=work_s, cpu_s=cpu_s)

    start = time.perf_counter()
    del held
    gc.collect()
    chan.mark("freed", free_s=time.perf_counter() - start)
    freed_at = time.monotonic()

    for after in spec.settle:
        time.sleep(max(0.0, freed_at + after - time.monotonic()))
        chan.mark("settle", after_s=after)
    if spec.purge and purge_self:
        chan.mark("purged", how=purge.release(snap.allocator))
    chan.send("result", heap=heap(snap.allocator) if purge_self else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allocscope.bench.kinds.workload.worker")
    parser.add_argument("spec", help="the run, as JSON (see Spec)")
    parser.add_argument("--fd", type=int, required=True, help="write events to this fd")
    args = parser.parse_args(argv)
    with os.fdopen(args.fd, "w") as out:
        chan = Channel(out, sys.stdin)
        try:
            run(Spec.from_json(args.spec), chan)
        except SystemExit:
            raise
        except BaseException as e:
            traceback.print_exc()  # kept with the run's stderr
            chan.send("error", message=f"{type(e).__name__}: {e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
