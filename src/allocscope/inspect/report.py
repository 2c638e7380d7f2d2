"""One record per inspected process, and the function that fills it from /proc/PID."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any

from allocscope import __version__
from allocscope.inspect import cgroup, crypto, heaps, kube, loader
from allocscope.inspect.errors import Exited, InspectError, NotInspectable
from allocscope.inspect.procinfo import Proc, environ, parse_maps
from allocscope.probe import memory
from allocscope.probe.errors import ProbeError
from allocscope.probe.snapshot import utc_now

SCHEMA = "allocscope.inspect/1"


@dataclass(frozen=True)
class Unknown:
    part: str  # environ, maps, memory, container, ...
    reason: str


@dataclass(frozen=True)
class ProcessMemory:
    process: memory.Memory | None  # RSS, PSS, USS, anon, file, swap, AnonHugePages
    glibc: heaps.GlibcHeaps | None  # only when glibc serves malloc
    allocator_counters: str  # where the allocator's own figures can (not) come from
    # glibc heaps' resident bytes over anon RSS: an estimate (see GlibcHeaps); None if n/a
    glibc_fragmentation_estimate: float | None = None


@dataclass(frozen=True)
class ProcessReport:
    schema: str
    allocscope_version: str
    time: str
    pid: int
    ppid: int
    command: str  # the kernel's comm
    cmdline: tuple[str, ...]
    exe: str | None
    state: str
    allocator: loader.AllocatorReport | None
    jemalloc_background_threads: int | None  # threads named jemalloc_bg_thd; None if n/a
    memory: ProcessMemory
    crypto: crypto.Crypto | None
    container: cgroup.Container | None
    kubernetes: kube.PodIdentity | None  # None off Kubernetes
    unknowns: tuple[Unknown, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def failed(self) -> bool:
        """A finding that is a failure in its own right (two allocators mapped)."""
        return self.allocator is not None and self.allocator.conflict is not None


CAP_SYS_PTRACE = 19


@functools.cache
def can_ptrace_others() -> bool:
    """Whether this process holds CAP_SYS_PTRACE (root in a container may not)."""
    try:
        with open("/proc/self/status") as f:
            caps = next(line for line in f if line.startswith("CapEff:"))
        return bool(int(caps.split()[1], 16) >> CAP_SYS_PTRACE & 1)
    except (OSError, StopIteration, ValueError, IndexError):
        return False


def _why(e: OSError) -> str:
    if isinstance(e, PermissionError):
        if can_ptrace_others():
            # Measured here: pid 1 of a microVM refuses even root with CAP_SYS_PTRACE.
            return (
                "permission denied even with CAP_SYS_PTRACE (the process is not dumpable, "
                "or a security module or another user namespace refuses)"
            )
        return "permission denied (another user's process: needs root or CAP_SYS_PTRACE)"
    return e.strerror or str(e)


def inspect_process(
    pid: int,
    proc_root: str = "/proc",
    cgroup_root: str = "/sys/fs/cgroup",
    pod_logs: kube.PodLogs | None = None,
) -> ProcessReport:
    """Everything /proc tells about ``pid`` without touching it (no ptrace).

    ``pod_logs`` (the kubelet's log directories; the agent reads them once per scrape)
    names the pod and container a Kubernetes cgroup path points at; by default they are
    read from /var/log. Without them only the pod's uid and QoS class are known.

    Raises NoSuchProcess, or NotInspectable for a kernel thread, a zombie, or a process
    that exits while being read. Parts that cannot be read are listed in ``unknowns``.
    """
    if pid <= 0:
        raise InspectError(f"not a process id: {pid}")
    proc = Proc(pid, proc_root)
    if proc.stat.kernel_thread:
        raise NotInspectable(
            f"process {pid} is a kernel thread ({proc.stat.command}): no user memory"
        )
    if proc.stat.state in ("Z", "X"):
        raise Exited(f"process {pid} is a zombie ({proc.stat.command}): it has exited")
    unknowns: list[Unknown] = []

    def attempt(part: str, read: Any) -> Any:
        try:
            return read()
        except OSError as e:
            proc.check_alive(e)
            unknowns.append(Unknown(part, _why(e)))
            return None

    cmdline = attempt("cmdline", lambda: proc.raw("cmdline"))
    exe = attempt("exe", lambda: proc.link("exe"))
    raw_env = attempt("environ", lambda: proc.raw("environ"))
    env = environ(raw_env) if raw_env is not None else None
    maps_text = attempt("maps", lambda: proc.text("maps"))
    maps = parse_maps(maps_text) if maps_text is not None else None

    alloc = None
    if maps is not None:
        alloc = loader.who_serves(proc, maps, env)
    else:
        unknowns.append(Unknown("allocator", "the maps cannot be read"))

    try:
        mem: memory.Memory | None = memory.read(proc_root, pid)
    except ProbeError as e:
        proc.check_alive()
        mem = None
        unknowns.append(Unknown("memory", str(e)))
    glibc = None
    if maps is not None and alloc and alloc.name == "glibc":
        pagemap = proc.path("pagemap")
        glibc = attempt("heap residency", lambda: heaps.glibc_heaps(maps, pagemap))
        glibc = glibc or heaps.glibc_heaps(maps)
    if alloc is not None and alloc.emulated and glibc is not None:
        glibc = None  # qemu emulates the program's brk with mappings of its own
        why = "under qemu-user, [heap] is the emulator's, and the program's arenas are unmarked"
        unknowns.append(Unknown("glibc heap", why))
    estimate = glibc.fragmentation_estimate(mem.anon_rss_bytes) if glibc and mem else None
    background = None
    if alloc and alloc.name == "jemalloc":
        names = attempt("threads", proc.thread_names)
        background = heaps.jemalloc_background_threads(names) if names is not None else None
    counters = _counters_note(alloc.name if alloc else "unknown")

    libcrypto = crypto.read(maps, env, proc_root) if maps is not None else None
    cgroup_text = attempt("container", lambda: proc.text("cgroup"))
    box = None
    if cgroup_text is not None:
        box, problems = cgroup.container(cgroup_text, cgroup_root)
        unknowns += [Unknown("container", p) for p in problems]
    logs = pod_logs if pod_logs is not None else kube.PodLogs.read(kube.LOG_ROOT)
    pod = logs.identify(box.cgroup if box else None)
    proc.check_alive()  # the process may have exited after we read some parts
    return ProcessReport(
        schema=SCHEMA,
        allocscope_version=__version__,
        time=utc_now(),
        pid=pid,
        ppid=proc.stat.ppid,
        command=proc.stat.command,
        cmdline=tuple(os.fsdecode(a) for a in cmdline.split(b"\0")[:-1]) if cmdline else (),
        exe=exe,
        state=proc.stat.state,
        allocator=alloc,
        jemalloc_background_threads=background,
        memory=ProcessMemory(mem, glibc, counters, estimate),
        crypto=libcrypto,
        container=box,
        kubernetes=pod,
        unknowns=tuple(unknowns),
    )


def _counters_note(name: str) -> str:
    if name == "jemalloc":
        return (
            "jemalloc's own counters (allocated, active, retained) need --attach "
            "(a Python target) or the application's own exporter"
        )
    if name == "glibc":
        return (
            "glibc's mallinfo2 (in use, free) needs --attach; from outside: heap and arena mappings"
        )
    if name == "unknown":
        return "no allocator was identified, so no allocator counters are read"
    return f"{name}'s own counters cannot be read from outside the process"
