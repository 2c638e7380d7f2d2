"""The build itself fails closed: a builder whose Python ABI differs never makes an image."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.container.dockerlib import REPO, SLOW, docker, free_port

pytestmark = [pytest.mark.container, SLOW]


def test_build_refuses_a_builder_of_another_abi(
    image_config: dict[str, Any], python_tag: str
) -> None:
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
    assert f"this Python is {python_tag} but PYTHON_TAG=cpython-399" in output, output[-3000:]
    assert "Successfully built" not in proc.stdout


def build_image(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "container" / "build-image.sh")],
        env={**os.environ, **env},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def test_chainguard_bases_that_cannot_be_pulled_fail_clearly(image: str) -> None:
    """ALLOCSCOPE_BASES=chainguard pulls; a registry that does not answer (a closed port on
    loopback here: no traffic leaves the machine) ends the build with a clear message."""
    registry = f"127.0.0.1:{free_port()}"
    proc = build_image(
        ALLOCSCOPE_BASES="chainguard", REGISTRY=registry, ALLOCSCOPE_IMAGE="allocscope-test-cg:x"
    )
    assert proc.returncode != 0
    assert f"cannot pull {registry}/chainguard/python:latest-dev" in proc.stderr, proc.stderr
    assert "ALLOCSCOPE_BASES=debian" in proc.stderr
    assert docker("image", "inspect", "allocscope-test-cg:x").returncode != 0


def test_auto_prefers_chainguard_bases_present_locally(image_config: dict[str, Any]) -> None:
    """With both Chainguard names present locally (here: the Debian bases tagged under a
    loopback registry name), auto builds on them through the same Dockerfile."""
    labels = image_config["Labels"]
    registry = f"127.0.0.1:{free_port()}"
    builder = f"{registry}/chainguard/python:latest-dev"
    runtime = f"{registry}/chainguard/python-fips:latest"
    target = "allocscope-test-auto:latest"
    tags = [builder, runtime, target]
    try:
        docker("tag", labels["allocscope.builder.name"], builder, check=True)
        docker("tag", labels["org.opencontainers.image.base.name"], runtime, check=True)
        proc = build_image(ALLOCSCOPE_BASES="auto", REGISTRY=registry, ALLOCSCOPE_IMAGE=target)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "using Chainguard's bases (present locally)" in proc.stderr
        version = labels["org.opencontainers.image.version"]
        tags.append(f"allocscope-test-auto:{version}")
        built = json.loads(docker("image", "inspect", target, check=True).stdout)[0]
        assert built["Config"]["Labels"]["org.opencontainers.image.base.name"] == runtime
        assert built["Config"]["Labels"]["allocscope.builder.name"] == builder
    finally:
        for tag in tags:
            docker("rmi", tag)


def test_requirements_without_hashes_fail_the_build(image_config: dict[str, Any]) -> None:
    """On the host (build-image.sh, through fetch-wheels.sh) and in the builder stage (a
    docker build given such a file directly): one clear line, no image."""
    app = REPO / "examples" / f".test-nohash-{os.getpid()}"
    app.mkdir()
    try:
        (app / "requirements.lock").write_text("flask==3.1.3\ngunicorn\n")
        (app / "app.py").write_text("app = None\n")
        proc = subprocess.run(
            [str(REPO / "container" / "build-image.sh"), "--app", str(app), "--command", "x"],
            env={**os.environ, "ALLOCSCOPE_IMAGE": "allocscope-test-nohash:x"},
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        assert "not a hash-locked requirements file (flask==3.1.3 has no --hash" in proc.stderr
        labels = image_config["Labels"]
        relative = app.relative_to(REPO) / "requirements.lock"
        proc = subprocess.run(
            [
                "docker", "build", "--network", "host", "--force-rm",
                "-f", str(REPO / "container" / "Dockerfile"),
                "--build-arg", f"BUILDER_IMAGE={labels['allocscope.builder.name']}",
                "--build-arg", f"RUNTIME_IMAGE={labels['org.opencontainers.image.base.name']}",
                "--build-arg", f"PYTHON_TAG={labels['allocscope.python.cache_tag']}",
                "--build-arg", f"APP_REQUIREMENTS={relative}", str(REPO),
            ],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        output = proc.stdout + proc.stderr
        assert f"APP_REQUIREMENTS={relative}: not a hash-locked requirements file" in output
        assert "Successfully built" not in proc.stdout
    finally:
        for f in app.iterdir():
            f.unlink()
        app.rmdir()
    assert docker("image", "inspect", "allocscope-test-nohash:x").returncode != 0
