"""Run a Python script in a fresh interpreter with extra environment; read its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import child_env


def run_json(script: str, *args: str, **env: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
