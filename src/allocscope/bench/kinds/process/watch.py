"""Start a user's command under a variant and watch its whole process tree from outside.

Shared by :mod:`allocscope.bench.kinds.process.command` (any command) and
:mod:`allocscope.bench.kinds.process.service` (any service): the environment (the user's own,
minus every allocator variable, plus the variant's and the Python hook's), the process
group, the tree's samples, the proof of every process's allocator, phase marks, and
stopping: SIGTERM to the group, SIGKILL after a grace period, every process we ever saw
killed by pid (a daemon that left the group too), the root reaped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allocscope.bench import orphans
from allocscope.bench.evidence import Escaped, HookEvents, Inside, ProcessProof
from allocscope.bench.kinds.process import guard, inject, kept, proof
from allocscope.bench.kinds.process import tree as proctree
from allocscope.bench.kinds.workload.runner import STDERR_KEPT, stderr_problems
from allocscope.bench.record import Mark, MarkInfo, Proof
from allocscope.bench.variants import Variant
from allocscope.expectations import Check

# A user's program needs the user's environment (its config, credentials, paths); what
# decides the allocator comes from the variant alone, never from the parent.
ALLOCATOR_ENV = re.compile(
    r"^(LD_PRELOAD|LD_LIBRARY_PATH|MALLOC_.*|_RJEM_MALLOC_CONF|JE_MALLOC_CONF|PYTHONMALLOC"
    r"|TCMALLOC_.*|MIMALLOC_.*|GLIBC_TUNABLES|ALLOCSCOPE_.*)$"
)
TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def target_environ(
    variant: Variant, hook: Mapping[str, str], parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    source = dict(os.environ if parent is None else parent)
    env = {k: v for k, v in source.items() if not ALLOCATOR_ENV.match(k)}
    return {**env, **variant.environ(), **hook}


# An unknown allocator is read again this many samples (the loader may still be mapping).
UNSURE_RETRIES = 20
NOT_READ = "it ended before its executable could be read"


@dataclass
class Watch:
    """One started command: its tree, proofs, marks and output."""

    variant: Variant
    proc: subprocess.Popen[bytes]
    out: kept.Kept
    err: kept.Kept
    hook_dir: str
    started: float
    tree: proctree.Tree
    proofs: dict[int, ProcessProof] = field(default_factory=dict)
    retries: dict[int, int] = field(default_factory=dict)  # re-reads of an unsure proof
    marks: list[Mark] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    exit_code: int | None = None
    cpu_reaped_s: float = 0.0  # from wait4: the root and every descendant it reaped
    escaped: list[Escaped] = field(default_factory=list)  # stopped outside the group

    @classmethod
    def start(
        cls,
        variant: Variant,
        argv: Sequence[str],
        *,
        trim_every: float | None = None,
        cwd: str | None = None,
    ) -> Watch:
        orphans.adopt()  # a daemon the command leaves behind is re-parented to us
        hook_dir = inject.prepare(tempfile.mkdtemp(prefix=guard.HOOK_PREFIX))
        guard.hold(hook_dir)  # before it starts: nothing of it may outlive allocscope
        hook = inject.environ(hook_dir, os.environ.get("PYTHONPATH"), trim_every)
        out, err = kept.Kept(), kept.Kept()  # bounded, however much it prints
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out.fd,
                stderr=err.fd,
                env=target_environ(variant, hook),
                cwd=cwd,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        finally:
            out.started()
            err.started()
        now = time.monotonic()
        watch = cls(variant, proc, out, err, hook_dir, now, proctree.Tree(proc.pid))
        watch.mark("start", argv=tuple(argv))
        return watch

    def now(self) -> float:
        return round(time.monotonic() - self.started, 4)

    def tick(self) -> list[proctree.ProcSample]:
        """Sample the tree; prove every process not proved yet (or that exec'd since)."""
        samples = self.tree.take(self.now())
        for s in samples:
            known = self.proofs.get(s.pid)
            # Again after an exec, or while the loader may still be mapping its libraries;
            # a process exiting meanwhile (no exe, unreadable) keeps the proof it had.
            exe = proof.exe_of(s.pid)
            unsure = known is not None and known.allocator in (None, "unknown")
            if unsure:  # a while, not for a whole soak: a static Go binary stays unknown
                self.retries[s.pid] = self.retries.get(s.pid, 0) + 1
                unsure = self.retries[s.pid] <= UNSURE_RETRIES
            if known is None or unsure or (exe is not None and exe != known.exe):
                found = proof.prove(s.pid)
                if known is None or found.allocator is not None:
                    self.proofs[s.pid] = found
        return samples

    def mark(self, event: str, **info: Any) -> Mark:
        """A phase boundary now; ``info``: the :class:`MarkInfo` fields it carries."""
        last = self.tree.last
        rss = last[1] if last else None
        if last:
            info.setdefault("pss", int(last[2]))
        m = Mark(event, self.now(), rss, self.tree.peak_rss or None, MarkInfo(**info))
        self.marks.append(m)
        return m

    def exited(self) -> bool:
        """Has the root exited? Asked without reaping it (its group id stays ours)."""
        if self.exit_code is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def stop(self, grace: float = TERM_GRACE) -> dict[str, Any]:
        """SIGTERM the group; SIGKILL whatever is left after ``grace``; reap the root.
        Processes that escaped the group get the same grace, and are told apart."""
        begun = time.monotonic()
        escapees = self._escapees()
        orphans.signal_all(escapees, signal.SIGTERM)
        how = "exited"
        if not self.exited():
            self._signal_all(signal.SIGTERM, spare=escapees)
            how = "SIGTERM"
            while time.monotonic() - begun < grace and not self._all_gone(spare=escapees):
                time.sleep(0.02)
            if not self._all_gone(spare=escapees):
                how = "SIGKILL"
        self._signal_all(signal.SIGKILL, spare=escapees)
        self._reap()
        left = max(0.0, grace - (time.monotonic() - begun))
        self.escaped += orphans.stop(escapees, left)
        return {"how": how, "took_s": round(time.monotonic() - begun, 3)}

    def kill(self) -> None:
        escapees = self._escapees()
        self._signal_all(signal.SIGKILL, spare=escapees)
        self._reap()
        self.escaped += orphans.stop(escapees, 0.0)

    def _escapees(self) -> dict[int, str]:
        """Processes of this run alive outside its process group: those seen in the tree
        that left it, and those carrying the run's marker wherever they were re-parented."""
        ours = orphans.marked(inject.DIR_ENV, self.hook_dir) | set(self.tree.names)
        return orphans.outside(self.proc.pid, ours)

    def _signal_all(self, sig: int, spare: Collection[int] = ()) -> None:
        """The group (while the root is unreaped its id cannot be reused), then by pid
        every process seen in the tree that may have left the group (but those in
        ``spare``: escapees, stopped and told by ``orphans``)."""
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
        for pid in list(self.tree.names):
            if pid != self.proc.pid and pid not in spare and _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def _all_gone(self, spare: Collection[int] = ()) -> bool:
        if not self.exited():
            return False
        return not any(_alive(p) for p in self.tree.names if p != self.proc.pid and p not in spare)

    def _reap(self) -> None:
        if self.exit_code is not None:
            return
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code
        self.cpu_reaped_s = usage.ru_utime + usage.ru_stime

    def output(self) -> tuple[str, str]:
        """The tail of stdout; stderr's head and tail."""
        self.out.close()
        self.err.close()
        return self.out.text()[-STDERR_KEPT:], self.err.text()

    def hook(self) -> HookEvents:
        """What the hook wrote in every Python process of the tree, typed."""
        return HookEvents.read(inject.read_events(self.hook_dir))

    def proof_problems(self) -> list[str]:
        """Why this run does not prove its variant: what stderr said, then the proof's own
        judgement (:meth:`Proof.problems`, the same judge that reads a results file)."""
        # Each process of the tree says it again: once is enough.
        problems = list(dict.fromkeys(stderr_problems(self.output()[1])))
        return problems + self.proof().problems(self.variant.allocator)

    def proof(self) -> Proof:
        """The root's allocator, with one check per process of the tree."""
        self._read_unsure_again()
        root = self.proofs.get(self.proc.pid)
        inside = self.inside()
        expected = self.variant.allocator
        # A descendant gone before it could be read (a launcher shim's short-lived shell)
        # proves nothing either way: a warning, not a check.
        # So does one whose executable could not be read: it was exiting or in the middle
        # of an exec when its maps were read (a `setsid` shim under load); and one read as
        # unknown once, while the loader was still mapping its libraries, and gone before
        # a second read. One unknown twice (a static binary) is a failed check.
        told = [
            p
            for p in self.proofs.values()
            if p.pid == self.proc.pid
            or (p.allocator and p.exe is not None and not self._read_once(p))
        ]
        unread = [p for p in self.proofs.values() if p not in told]
        checks = [self._check(p, expected) for p in told]
        if root is None:
            why = "the command exited before its allocator could be read"
            checks.insert(0, Check(f"process {self.proc.pid} (the command)", False, why))
        return Proof(
            allocator=root.allocator if root else None,
            version=(root.version if root else None) or _inside_version(inside),
            path=root.path if root else None,
            source="inspect (symbols, from outside)",
            warnings=tuple(self._unread_words(p) for p in unread),
            checks=tuple(checks),
            ok=bool(checks) and all(c.passed for c in checks),
            tree=True,
        )

    def _read_once(self, p: ProcessProof) -> bool:
        """Unknown at its only read: :meth:`tick` reads an unsure process again while it
        lives, so it was gone before the next sample."""
        return p.allocator in (None, "unknown") and not self.retries.get(p.pid)

    def _read_unsure_again(self) -> None:
        """A process still alive that was read as unknown once: read it again now (the
        run may have ended before the next sample)."""
        for p in [p for p in self.proofs.values() if self._read_once(p) and _alive(p.pid)]:
            self.retries[p.pid] = 1
            found = proof.prove(p.pid)
            if found.allocator is not None:
                self.proofs[p.pid] = found

    def _unread_words(self, p: ProcessProof) -> str:
        name = self.tree.names.get(p.pid, "?")
        if p.exe is not None and p.allocator == "unknown":
            return (
                f"process {p.pid} ({name}, {p.exe}) not told: read once as it started (its"
                " libraries not mapped yet: allocator unknown) and gone before a second read"
            )
        return f"process {p.pid} ({name}) not read: {p.detail or NOT_READ}"

    def _check(self, p: ProcessProof, expected: str) -> Check:
        name = f"process {p.pid} ({self.tree.names.get(p.pid, '?')}, {p.exe})"
        found = f"{p.allocator} {p.version or ''} {p.path or ''}".split()
        if p.conflict:
            return Check(name, False, p.conflict)
        if p.allocator is None:
            return Check(name, False, f"allocator unknown: {p.detail}")
        if not p.matches(expected):
            return Check(name, False, f"runs on {p.allocator}, not {expected}")
        return Check(name, True, " ".join([*found, p.detail]).strip())

    def inside(self) -> list[Inside]:
        """What each Python process of the tree saw from inside (the injected hook)."""
        return list(self.hook().inside)

    def finish(self) -> None:
        self.out.close(0)
        self.err.close(0)
        shutil.rmtree(self.hook_dir, ignore_errors=True)
        guard.release(self.hook_dir)


def _inside_version(inside: list[Inside]) -> str | None:
    return next((i.version for i in inside if i.version), None)


def _alive(pid: int) -> bool:
    """Is ``pid`` still a live process (not gone, not a zombie)? Asked only for pids seen
    in the tree moments ago, so a reused pid is unlikely; the group kill covers the rest."""
    try:
        proctree.sample(pid, pss=False)
    except Exception:
        return False
    return True
