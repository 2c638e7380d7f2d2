"""allocscope fleet: the audit of every node agent's series, asked of a Prometheus."""

from __future__ import annotations

import argparse
import sys

from allocscope import exitcodes
from allocscope.errors import AllocscopeError, UsageError

HELP = "audit the fleet through Prometheus: allocators, background threads, FIPS, memory"

ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "glibc")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus's base URL")
    parser.add_argument("--namespace", help="only this Kubernetes namespace")
    parser.add_argument("--expect-allocator", choices=ALLOCATORS, help="the allocator expected")
    parser.add_argument(
        "--expect-fips",
        choices=("enforced",),
        help="libcrypto must come with OpenSSL's FIPS provider mapped",
    )
    parser.add_argument("--window", default="1h", help="RSS growth over this range (default 1h)")
    parser.add_argument(
        "--growth-percent", type=float, default=20.0, help="growth worth a finding (default 20)"
    )
    parser.add_argument(
        "--fragmentation-above",
        type=float,
        default=0.5,
        help="glibc fragmentation estimate worth a finding (default 0.5, with 64 MiB of heap)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="allocscope.fleet/1 JSON")
    out.add_argument("--markdown", action="store_true", help="a Markdown table and what to do")
    out.add_argument("--csv", action="store_true", help="one row per process")
    parser.add_argument(
        "--fail-on",
        metavar="KINDS",
        help="exit 1 when a finding of these kinds is found: any, or a comma list of "
        "allocator, background-thread, two-allocators, fips, growth, fragmentation",
    )
    auth = parser.add_argument_group("Prometheus access")
    auth.add_argument("--bearer-token-file", help="send the token in this file as a bearer")
    auth.add_argument("--basic-auth-user", help="HTTP basic auth user")
    auth.add_argument("--basic-auth-password-file", help="its password, in this file")
    auth.add_argument("--ca-file", help="CA bundle to verify an https Prometheus with")
    auth.add_argument("--timeout", type=float, default=30.0, help="seconds per query (default 30)")
    parser.epilog = (
        "Exit codes: 0 audited (no --fail-on finding), 1 a finding named by --fail-on, "
        "2 bad flags, 3 an unreadable token or password file, 30 Prometheus unreachable, "
        "31 a query answered with an error (HTTP status, auth), 32 no allocscope series."
    )


def _secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise AllocscopeError(f"cannot read the {what} file {path}: {e.strerror or e}") from e


def run(args: argparse.Namespace) -> int:
    from allocscope.fleet import render
    from allocscope.fleet.audit import Expectations, audit, parse_fail_on
    from allocscope.fleet.prometheus import Prometheus

    fail_on = parse_fail_on(args.fail_on) if args.fail_on is not None else frozenset()
    if not args.prometheus.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus: not an http(s) URL: {args.prometheus!r}")
    if (args.basic_auth_user is None) != (args.basic_auth_password_file is None):
        raise UsageError("--basic-auth-user and --basic-auth-password-file go together")
    token = _secret(args.bearer_token_file, "token") if args.bearer_token_file else None
    basic = (
        (args.basic_auth_user, _secret(args.basic_auth_password_file, "password"))
        if args.basic_auth_user is not None
        else None
    )
    prom = Prometheus(args.prometheus, args.timeout, token, basic, args.ca_file)
    expect = Expectations(
        allocator=args.expect_allocator,
        fips=args.expect_fips == "enforced",
        window=args.window,
        growth_ratio=args.growth_percent / 100,
        fragmentation_ratio=args.fragmentation_above,
    )
    result = audit(prom, args.namespace, expect)
    if args.json:
        print(render.as_json(result))
    elif args.markdown:
        print(render.markdown(result))
    elif args.csv:
        sys.stdout.write(render.as_csv(result))
    else:
        print(render.text(result))
    failing = [f for _, f in result.findings() if f.kind in fail_on]
    return exitcodes.CHECK_FAILED if failing else exitcodes.OK
