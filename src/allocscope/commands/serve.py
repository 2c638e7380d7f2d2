"""allocscope serve: start the HTTP service through the launcher (no vendor lookup)."""

from __future__ import annotations

import argparse

from allocscope.service import launch

HELP = "serve GET / (allocator and FIPS as JSON), /stats, /metrics, /healthz, /readyz, POST /echo"


def configure(parser: argparse.ArgumentParser) -> None:
    launch.add_arguments(parser)
    parser.epilog = (
        "Settings come from the environment (HOST, PORT, WEB_CONCURRENCY, ALLOCSCOPE_*), "
        "flags override them. Exit codes: 2 bad setting, 112 granian missing, "
        "114 start-up check failed, 117 HOST:PORT cannot be bound; otherwise the process "
        "becomes granian."
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = launch.settings_from(args)
    except launch.LaunchError as e:
        launch.fail(e)
    launch.launch(settings, vendor_root=None)
