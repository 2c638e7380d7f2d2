"""Exit codes of every allocscope command, in one place (docs/reference/exit-codes.md)."""

from __future__ import annotations

import signal

OK = 0
CHECK_FAILED = 1  # verify: at least one expectation is unmet
USAGE = 2  # bad command line (argparse uses 2 as well)
BAD_INPUT = 3  # unreadable or invalid input (results, variant, workload, TOML); unwritable --out
RUN_FAILED = 4  # bench/compare: no run succeeded
MISSING_EXTRA = 5  # the command needs an optional extra (pip install 'allocscope[...]')
INTERNAL = 70  # a bug: allocscope failed where it should not (sysexits' EX_SOFTWARE)
INTERRUPTED = 130  # SIGINT; any stop signal N is 128 + N (SIGHUP 129, SIGTERM 143)

# Launcher codes follow the Ruby demo's (111, 112) so operators recognise them.
VENDOR_MISSING = 111
SERVER_MISSING = 112
ABI_MISMATCH = 113
STARTUP_CHECK_FAILED = 114  # fail closed: e.g. FIPS expected but not in effect
COMMAND_NOT_FOUND = 115  # the command to exec is not in the image
APP_IMPORT_FAILED = 116  # the command's app module (module:attr) does not import
BIND_FAILED = 117  # the address to listen on cannot be bound (in use, not ours, bad)

# fleet (a Prometheus's HTTP API); 1 also means a finding named by --fail-on was found.
PROMETHEUS_UNREACHABLE = 30  # no answer: refused, DNS, TLS, timeout
PROMETHEUS_QUERY_FAILED = 31  # an answer that is an error: HTTP 4xx/5xx (auth), bad JSON
NO_SERIES = 32  # Prometheus answers, but holds no allocscope agent series (in the namespace)

# inspect (another process); 1 also means "two allocators mapped" for info and inspect.
NOT_INSPECTABLE = 20  # a kernel thread, a zombie, or a process that exited while being read
ATTACH_UNSUPPORTED = 21  # --attach: not a CPython, not x86-64, or the probe failed inside it
ATTACH_DENIED = 22  # --attach: ptrace not permitted (root / CAP_SYS_PTRACE, Yama ptrace_scope)
ATTACH_TIMEOUT = 23  # --attach: no answer in time (main thread blocked in C code)


def stopped_by(name: str) -> int:
    """The exit code after a stop signal, by its name ('SIGTERM' -> 143)."""
    return 128 + int(signal.Signals[name])
