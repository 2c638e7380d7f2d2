"""What to measure and how: one frozen :class:`Plan` for every kind of run.

The CLI (``commands/flags.py``) and the Python API (``allocscope.compare``) both call
:func:`make`, so a value means the same from either, and every check lives here: an
invalid value, or an option that cannot apply to the kind of run, is a :class:`PlanError`
(exit 3) with a message that says what to change. Nothing here knows argparse.

What is measured (:attr:`Plan.work`) is one of three kinds:

- :class:`Workloads`: built-in workloads or a user's ``module:function``, each run in a
  worker child that reports its phases;
- :class:`Command`: any program (any language), measured from outside as a process tree;
- :class:`Service`: a server started on a free loopback port, put under load.
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from allocscope.bench import workloads as workloads_mod
from allocscope.bench.results.header import AutoRepeats, Config, DefaultRepeats
from allocscope.bench.variants import Variant
from allocscope.errors import AllocscopeError

PARAM_FLAGS = ("threads", "iters", "size", "keep", "rounds")
AUTO_FIRST = 5  # --repeats auto: repeats before the first look (stats.MIN_RUNS)
AUTO_TARGET = 0.05  # +-5 % of the median
AUTO_BUDGET = 600.0
AUTO_MAX = 20
WORKLOAD_TIMEOUT = 120.0
COMMAND_TIMEOUT = 3600.0  # a user's job may well take minutes; --timeout for more
WORKLOAD_SETTLE = (0.5, 2.0)
SERVICE_SETTLE = (1.0, 5.0)  # after the load: a server's idle readings
TREE_INTERVAL = 0.1  # at least, for a process tree: smaps_rollup of each costs a page walk
# A command or service without --repeats: enough runs for a verdict (stats.MIN_RUNS),
# interleaved; once a run has taken LONG_RUN s or more, only the rounds that fit --budget.
DEFAULT_REPEATS = 5
LONG_RUN = 60.0
AS_DEPLOYED = ("ALLOCSCOPE_AS_DEPLOYED", "1")  # the hook reads it in each forked worker

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class PlanError(AllocscopeError):
    """A value, or a combination of options, that cannot make a plan (exit 3)."""


# --- checked values ------------------------------------------------------------------


def positive(name: str, value: float, *, integer: bool = False, zero: bool = False) -> None:
    low_ok = value >= 0 if zero else value > 0
    if not (low_ok and math.isfinite(value)) or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        bound = "0 or more" if zero else "greater than 0"
        raise PlanError(f"--{name} must be {kind} {bound}, not {value:g}")


def parse_repeats(text: str) -> int | Literal["auto"]:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise PlanError(
            f"--repeats must be a whole number greater than 0 or auto, not {text!r}"
        ) from None
    positive("repeats", value, integer=True)
    return value


def parse_settle(text: str, flag: str = "--settle") -> tuple[float, ...]:
    """'0.5,2' -> (0.5, 2.0): seconds after the work (or the load) to read RSS at."""
    if not text.strip():
        return ()
    try:
        values = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise PlanError(f"{flag} {text!r}: expected seconds like 0.5,2") from None
    return _settle(values, flag)


def _settle(values: Sequence[float], flag: str = "--settle") -> tuple[float, ...]:
    for value in values:
        positive(flag.lstrip("-"), value, zero=True)
    return tuple(sorted(float(v) for v in values))


def parse_duration(text: str, flag: str, *, zero: bool = False) -> float:
    """'500ms', '60s', '5m', '8h' or plain seconds; 0 only where ``zero`` allows it."""
    m = _DURATION.match(text)
    if not m:
        raise PlanError(f"{flag} {text!r}: expected a duration like 30s, 5m or 8h")
    value = float(m.group(1)) * _UNIT[m.group(2)]
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise PlanError(f"{flag} {text!r}: must be greater than 0")
    return value


# --- the three kinds of work -----------------------------------------------------------


@dataclass(frozen=True)
class Workloads:
    """Built-in workloads (or ``module:function``) with their parameters, in order."""

    items: tuple[tuple[str, workloads_mod.Params], ...]
    kind: Literal["workload"] = "workload"


@dataclass(frozen=True)
class Command:
    """A program run to its end under each variant: ``("python3", "job.py")``."""

    argv: tuple[str, ...]
    kind: Literal["command"] = "command"


@dataclass(frozen=True)
class Service:
    """A server under load. ``command`` holds ``{port}``: where a free loopback port goes.

    Give ``load`` (requests), ``duration`` (seconds) or ``load_cmd`` (your own generator,
    ``{url}`` in it); durations are seconds (the CLI reads '30s', '5m')."""

    command: str
    load: int | None = None
    duration: float | None = None
    load_cmd: str | None = None
    ready: str = "/"
    ready_timeout: float = 30.0
    concurrency: int = 32
    procs: int = 2
    url: str = "/"
    requests_file: str | None = None
    warm: float = 2.0
    grace: float = 5.0
    progress_every: float = 30.0
    kind: Literal["service"] = "service"

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise PlanError("--serve: the command is empty")
        if "{port}" not in self.command:
            raise PlanError(
                "--serve: the command has no {port}: say where the free port goes, "
                "e.g. --serve 'gunicorn -b 127.0.0.1:{port} app:app'"
            )
        try:
            shlex.split(self.command)
        except ValueError as e:
            raise PlanError(f"--serve: cannot split the command: {e}") from None
        if self.load is None and self.duration is None and not self.load_cmd:
            raise PlanError("--serve needs --load N, --duration D or --load-cmd")
        if self.load is not None and self.load < 1:
            raise PlanError(f"--load must be 1 or more, not {self.load}")
        if self.concurrency < 1 or self.procs < 1:
            raise PlanError("--concurrency and --load-procs must be 1 or more")
        if self.load_cmd and "{url}" not in self.load_cmd:
            raise PlanError("--load-cmd has no {url}: e.g. --load-cmd 'wrk -d10s {url}/'")
        for flag, path in (("--ready", self.ready), ("--url", self.url)):
            if not path.startswith("/"):
                raise PlanError(f"{flag} {path!r}: expected a path starting with /")
        for flag, seconds, zero in (
            ("duration", self.duration, False),
            ("ready-timeout", self.ready_timeout, False),
            ("warm", self.warm, True),
            ("grace", self.grace, False),
            ("progress-every", self.progress_every, False),
        ):
            if seconds is not None:
                positive(flag, seconds, zero=zero)

    def argv(self, port: int) -> list[str]:
        return shlex.split(self.command.replace("{port}", str(port)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Work = Workloads | Command | Service


# --- the plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    variants: list[Variant]  # unavailable ones included: they are reported
    work: Work
    repeats: int  # measured runs; with auto, the first batch (then more, one at a time)
    warmup: int
    settle: tuple[float, ...]  # seconds after the work (a service: after the load)
    interval: float
    timeout: float
    serial: bool
    purge: bool
    seed: int  # shuffles the order of each repeat and seeds the bootstrap
    auto: bool = False  # --repeats auto: repeat until the intervals are narrow enough
    precision: float = AUTO_TARGET  # --target: half-width of the interval / the median
    budget: float = AUTO_BUDGET  # seconds --repeats auto (or a command's default runs) may spend
    max_repeats: int = AUTO_MAX
    repeats_default: bool = False  # a command or service without --repeats: see LONG_RUN

    @property
    def available(self) -> list[Variant]:
        return [v for v in self.variants if v.available]

    @property
    def kind(self) -> str:
        return self.work.kind

    @property
    def workloads(self) -> list[tuple[str, workloads_mod.Params]]:
        return list(self.work.items) if isinstance(self.work, Workloads) else []

    def config(self) -> Config:
        """What the results file records about how it was made."""
        work = self.work
        return Config(
            kind=self.kind,
            repeats=self.repeats,
            warmup=self.warmup,
            settle_s=self.settle,
            interval_s=self.interval,
            timeout_s=self.timeout,
            serial=self.serial,
            purge=self.purge,
            seed=self.seed,
            # the flag's name (--target), as older files say it
            repeats_auto=AutoRepeats(self.precision, self.budget, self.max_repeats)
            if self.auto
            else None,
            repeats_default=DefaultRepeats(self.repeats, LONG_RUN, self.budget)
            if self.repeats_default
            else None,
            workloads={name: params.to_dict() for name, params in work.items}
            if isinstance(work, Workloads)
            else None,
            argv=work.argv if isinstance(work, Command) else None,
            serve=work.to_dict() if isinstance(work, Service) else None,
        )


def make(
    variants: Sequence[Variant],
    *,
    workloads: Sequence[str] = (),
    command: Sequence[str] | None = None,
    service: Service | None = None,
    repeats: int | Literal["auto"] | None = None,
    warmup: int | None = None,
    seed: int | None = None,
    settle: Sequence[float] | None = None,
    interval: float = 0.05,
    timeout: float | None = None,
    serial: bool = False,
    purge: bool = True,
    scale: float = 1.0,
    params: Mapping[str, int] | None = None,
    precision: float = AUTO_TARGET,
    budget: float = AUTO_BUDGET,
    as_deployed: bool = False,
) -> Plan:
    """A checked plan: exactly one of ``workloads``, ``command`` and ``service``.

    Defaults follow the kind: built-in workloads 5 repeats after 1 warm-up, 120 s timeout,
    settle 0.5,2; a command or service 5 interleaved repeats (fewer when runs are long:
    see LONG_RUN), no warm-up, a 3600 s timeout; a service reads RSS 1 and 5 s after its
    load. ``as_deployed``: forked Python workers are measured without the hook turning
    jemalloc's background thread back on (commands and services). An option that cannot
    apply to the kind (workload parameters or ``--settle`` for a command, which ends by
    itself) is refused.
    """
    given = [w for w in (bool(workloads), command is not None, service is not None) if w]
    if len(given) > 1:
        raise PlanError("give one of: workloads (-w), a command (-- CMD), a service (--serve)")
    work: Work
    if service is not None:
        work = service
    elif command is not None:
        work = Command(tuple(command))
    else:
        work = _workloads(workloads or workloads_mod.DEFAULT_SET, scale, params or {})
    if isinstance(work, Workloads) and as_deployed:
        raise PlanError("--as-deployed is for a command or service (forked workers)")
    if as_deployed:
        variants = [replace(v, env=(*v.env, AS_DEPLOYED)) for v in variants]
    if not isinstance(work, Workloads):
        _refuse_for(work.kind, scale=scale, params=params, purge=purge)
        if isinstance(work, Service) and timeout is not None:
            raise PlanError(
                "--timeout is for workloads and commands; a service's run ends with its load "
                "(--duration, --load) and its stop (--grace): leave it out"
            )
        if isinstance(work, Command) and settle:
            raise PlanError(
                "--settle is for workloads and services (RSS read after the work); "
                "a command ends by itself: leave it out"
            )
    auto = repeats == "auto"
    count = _default_repeats(work) if repeats is None else repeats
    count = AUTO_FIRST if count == "auto" else count
    positive("repeats", count, integer=True)
    warmup = warmup if warmup is not None else (1 if isinstance(work, Workloads) else 0)
    positive("warmup", warmup, integer=True, zero=True)
    positive("target", precision * 100)
    positive("budget", budget)
    positive("interval", interval)
    if timeout is None:
        timeout = WORKLOAD_TIMEOUT if isinstance(work, Workloads) else COMMAND_TIMEOUT
    positive("timeout", timeout)
    if settle is None:
        settle = {"workload": WORKLOAD_SETTLE, "service": SERVICE_SETTLE}.get(work.kind, ())
    if not isinstance(work, Workloads):
        interval = max(interval, TREE_INTERVAL)
    return Plan(
        variants=list(variants),
        work=work,
        repeats=int(count),
        warmup=int(warmup),
        settle=_settle(settle),
        interval=interval,
        timeout=timeout,
        serial=serial,
        purge=purge and isinstance(work, Workloads),
        seed=seed if seed is not None else secrets.randbits(32),
        auto=auto,
        precision=precision,
        budget=budget,
        repeats_default=repeats is None and not isinstance(work, Workloads),
    )


def _default_repeats(work: Work) -> int:
    return 5 if isinstance(work, Workloads) else DEFAULT_REPEATS


def _workloads(names: Sequence[str], scale: float, params: Mapping[str, int]) -> Workloads:
    positive("scale", scale)
    unknown = set(params) - set(PARAM_FLAGS)
    if unknown:
        raise PlanError(f"unknown workload parameters: {', '.join(sorted(unknown))}")
    chosen = []
    for name in names:
        chosen.append((name, workloads_mod.defaults(name).scaled(scale).replace(**params)))
    if len({n for n, _ in chosen}) != len(chosen):
        raise PlanError("a workload is given twice")
    return Workloads(tuple(chosen))


def _refuse_for(
    kind: str,
    *,
    scale: float,
    params: Mapping[str, int] | None,
    purge: bool,
) -> None:
    """Options of the built-in workloads that a command or service cannot honour."""
    refused = [f"--{k}" for k in (params or {})]
    if scale != 1.0:
        refused.append("--scale")
    if not purge:
        refused.append("--no-purge")
    if refused:
        raise PlanError(
            f"{', '.join(refused)}: for the built-in workloads only; "
            f"a {kind} is measured as it runs: leave {'them' if len(refused) > 1 else 'it'} out"
        )
