"""allocscope verify: check expectations; one line per failed check; exit 1 on failure."""

from __future__ import annotations

import argparse
import json
import sys

from allocscope import exitcodes
from allocscope.api import verify
from allocscope.expectations import ALLOCATORS, FIPS_LEVELS, Expectations

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
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only failures")
    parser.epilog = (
        "Unset flags fall back to ALLOCSCOPE_EXPECT_ALLOCATOR, ALLOCSCOPE_EXPECT_FIPS, "
        "ALLOCSCOPE_EXPECT_MALLOC_CONF and ALLOCSCOPE_EXPECT_PRELOAD. "
        "Exit codes: 0 all checks pass, 1 a check failed, 2 usage error (also a bad "
        "ALLOCSCOPE_EXPECT_* value)."
    )


def expectations(args: argparse.Namespace) -> Expectations:
    env = Expectations.from_environ()
    return Expectations(
        allocator=args.allocator or env.allocator,
        fips=args.fips or env.fips,
        malloc_conf=env.malloc_conf if args.malloc_conf is None else args.malloc_conf,
        preload=env.preload if args.preload is None else args.preload,
    )


def run(args: argparse.Namespace) -> int:
    try:
        want = expectations(args)
    except ValueError as e:
        print(f"allocscope verify: {e}", file=sys.stderr)
        return exitcodes.USAGE
    verdict = verify(want)
    checks = verdict.checks
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            if not c.passed or not args.quiet:
                print(f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        if not checks and not args.quiet:
            print("ok   nothing to check: pass --allocator or --fips, or set MALLOC_CONF")
    return exitcodes.OK if verdict.passed else exitcodes.CHECK_FAILED
