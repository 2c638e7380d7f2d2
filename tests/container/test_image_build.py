"""The build itself fails closed: a builder whose Python ABI differs never makes an image."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.container.dockerlib import REPO, SLOW

pytestmark = [pytest.mark.container, SLOW]


def test_build_refuses_a_builder_of_another_abi(image_config: dict[str, Any]) -> None:
    labels = image_config["Labels"]
    builder = labels.get("allocscope.builder.name")
    runtime = labels.get("org.opencontainers.image.base.name")
    if not builder or not runtime:
        pytest.fail("the image predates the allocscope.builder.name label: run make image")
    if not (REPO / "container" / "wheels" / "app" / "allocscope.lock").is_file():
        pytest.fail("container/wheels is missing: run make image (container/fetch-wheels.sh)")
    proc = subprocess.run(
        [
            "docker", "build", "--network", "host", "--force-rm",
            "-f", str(REPO / "container" / "Dockerfile"),
            "--build-arg", f"BUILDER_IMAGE={builder}", "--build-arg", f"RUNTIME_IMAGE={runtime}",
            "--build-arg", "PYTHON_TAG=cpython-399", str(REPO),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    # The legacy builder prints a step's own output (stderr included) on stdout.
    output = proc.stdout + proc.stderr
    assert "this Python is cpython-313 but PYTHON_TAG=cpython-399" in output, output[-3000:]
    assert "Successfully built" not in proc.stdout
