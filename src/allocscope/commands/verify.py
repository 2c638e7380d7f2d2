"""allocscope verify: check expectations; one line per failed check; exit 1 on failure."""

from __future__ import annotations

import argparse
import json

from allocscope import exitcodes
from allocscope.api import verify
from allocscope.errors import UsageError
from allocscope.expectations import (
    ALLOCATORS,
    FIPS_LEVELS,
    Check,
    Expectations,
    strict_from_environ,
)
from allocscope.probe.snapshot import snapshot

HELP = "check the allocator and FIPS state against expectations (for CI gates, health checks)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allocator", choices=ALLOCATORS, help="the allocator that must serve malloc"
    )
    parser.add_argument("--fips", choices=FIPS_LEVELS, help="the FIPS state required (at least)")
    parser.add_argument(
        "--no-malloc-conf",
        dest="malloc_conf",
        action="store_false",
        default=None,
        help="do not require every MALLOC_CONF key to be in effect",
    )
    parser.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        default=None,
        help="do not require every LD_PRELOAD entry to be loaded",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="fail (exit 1) when nothing is expected, so a gate with a forgotten setting "
        "is red (also ALLOCSCOPE_VERIFY_STRICT=1)",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only failures")
    parser.epilog = (
        "Unset flags fall back to ALLOCSCOPE_EXPECT_ALLOCATOR, ALLOCSCOPE_EXPECT_FIPS, "
        "ALLOCSCOPE_EXPECT_MALLOC_CONF and ALLOCSCOPE_EXPECT_PRELOAD. "
        "Exit codes: 0 all checks pass, 1 a check failed (or, with --strict, nothing was "
        "checked), 2 usage error (also a bad ALLOCSCOPE_EXPECT_* or ALLOCSCOPE_VERIFY_STRICT "
        "value)."
    )


def expectations(args: argparse.Namespace) -> Expectations:
    env = Expectations.from_environ()
    return Expectations(
        allocator=args.allocator or env.allocator,
        fips=args.fips or env.fips,
        malloc_conf=env.malloc_conf if args.malloc_conf is None else args.malloc_conf,
        preload=env.preload if args.preload is None else args.preload,
    )


NOTHING = "nothing to check: pass --allocator or --fips, or set MALLOC_CONF"


def run(args: argparse.Namespace) -> int:
    try:
        want = expectations(args)
        strict = args.strict or strict_from_environ()
    except ValueError as e:
        raise UsageError(str(e)) from None
    checks = list(verify(want, snap=snapshot(prove=True)).checks)
    if not checks and strict:
        checks = [Check("expectations", False, NOTHING + " (--strict)")]
    failed = [c for c in checks if not c.passed]
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            if not c.passed or not args.quiet:
                print(f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        if not checks and not args.quiet:
            print(f"ok   {NOTHING}")
    return exitcodes.CHECK_FAILED if failed else exitcodes.OK
