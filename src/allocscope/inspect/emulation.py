"""A process that qemu-user runs (binfmt_misc): the program it emulates, not the emulator.

Measured here (Debian's qemu-user-static, binfmt flags PF): /proc/PID/exe names the
emulator (/usr/bin/qemu-aarch64-static, a static host binary whose own malloc is glibc's);
/proc/PID/cmdline is the emulator's argv, [interpreter, program, argv0, args...], where
binfmt_misc put the file the kernel was asked to exec as argv[1]; the guest's ELF objects
are mapped readable but never executable (qemu translates their code, the host does not
run it). So the program comes from argv[1] and its objects from every file mapping of its
machine. The guest's environ is the emulator's, LD_PRELOAD included (a static qemu ignores
it; the guest's loader reads it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from allocscope.inspect.procinfo import Proc
from allocscope.probe import elf

_QEMU = re.compile(r"^qemu-(?P<arch>[a-z0-9_]+?)(-static)?$")


@dataclass(frozen=True)
class Emulated:
    emulator: str  # the host binary /proc/PID/exe names
    program: str  # the emulated executable, as the process sees it (absolute)
    machine: str  # the program's machine (aarch64), as elf names it

    @property
    def text(self) -> str:
        return f"{self.machine} under qemu-user ({self.emulator})"


def detect(proc: Proc) -> Emulated | None:
    """The program a qemu-user process emulates, or None for a process that runs natively."""
    try:
        emulator = proc.link("exe")
    except OSError:
        return None
    if _QEMU.match(os.path.basename(emulator)) is None:
        return None
    try:
        argv = proc.raw("cmdline").split(b"\0")
    except OSError:
        return None
    if len(argv) < 2 or not argv[1]:
        return None
    program = os.fsdecode(argv[1])
    if not program.startswith("/"):  # as exec'ed: relative to the working directory then
        try:
            program = os.path.normpath(os.path.join(proc.link("cwd"), program))
        except OSError:
            return None
    header = elf.header(proc.in_root(program))
    if isinstance(header, str):
        return None
    machine = elf.SUPPORTED.get(header) or f"{header[0]}-bit {elf.describe_machine(header[1])}"
    return Emulated(emulator, program, machine)
