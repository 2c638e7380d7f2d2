"""Container tests: a real Docker engine and the real image, built by ``make image``.

The engine is started with ``scripts/docker-engine.sh`` (loopback only: no bridge, no
iptables) when none answers; the image is built with ``container/build-image.sh`` when it is
missing (``make test`` builds it first). Containers run with ``--network host`` (the service
then listens on 127.0.0.1) or ``--network none``, never on a bridge, and every container a
test starts is removed by name afterwards, whatever happens.

``ALLOCSCOPE_TEST_IMAGE`` names another image to test (default ``allocscope:latest``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.container.dockerlib import BUILD_TIMEOUT, IMAGE, REPO, docker

# A build a test starts is of this machine's platform only, whatever PLATFORMS `make test`
# exported (it builds both) and whether arm64 can be emulated here (build-image.sh's
# default): the arm64 tests ask for linux/arm64 themselves.
NATIVE_PLATFORM = "linux/" + {"x86_64": "amd64", "aarch64": "arm64"}.get(
    os.uname().machine, os.uname().machine
)
os.environ["PLATFORMS"] = NATIVE_PLATFORM


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def engine() -> None:
    if _engine_answers():
        return
    proc = subprocess.run(
        [str(REPO / "scripts" / "docker-engine.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0 or not _engine_answers():
        pytest.fail(f"no Docker engine: scripts/docker-engine.sh start said:\n{proc.stderr}")


@pytest.fixture(scope="session")
def image(engine: None) -> str:
    """The image under test; built with container/build-image.sh when missing."""
    if docker("image", "inspect", IMAGE).returncode != 0:
        if IMAGE != "allocscope:latest":
            pytest.fail(f"{IMAGE} (ALLOCSCOPE_TEST_IMAGE) does not exist")
        build_image(IMAGE)
    return IMAGE


def build_image(tag: str, *args: str, platforms: str | None = None) -> None:
    """container/build-image.sh ARGS, tagged ``tag``; the test fails with its message.

    ``platforms`` (PLATFORMS): another architecture's image is tagged ``tag-ARCH``.
    """
    env = {**os.environ, "ALLOCSCOPE_IMAGE": tag}
    if platforms is not None:
        env["PLATFORMS"] = platforms
    proc = subprocess.run(
        [str(REPO / "container" / "build-image.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"container/build-image.sh {' '.join(args)} failed:\n{proc.stderr[-4000:]}")


# The example images (examples/*): built with container/build-image.sh --app when missing.
EXAMPLES = {
    "flask-gunicorn": os.environ.get(
        "ALLOCSCOPE_TEST_FLASK_IMAGE", "allocscope-example-flask:latest"
    ),
    "fastapi-uvicorn": os.environ.get(
        "ALLOCSCOPE_TEST_FASTAPI_IMAGE", "allocscope-example-fastapi:latest"
    ),
}


def example_tag(example: str) -> str:
    """The image of ``examples/<example>``, built when missing."""
    tag = EXAMPLES[example]
    if docker("image", "inspect", tag).returncode != 0:
        build_image(tag, "--app", f"examples/{example}")
    return tag


@pytest.fixture(scope="session", params=sorted(EXAMPLES))
def example_image(request: pytest.FixtureRequest, engine: None) -> tuple[str, str]:
    """(example, image): each example's image."""
    example: str = request.param
    return example, example_tag(example)


@pytest.fixture(scope="session")
def flask_image(engine: None) -> str:
    return example_tag("flask-gunicorn")


@pytest.fixture(scope="session")
def image_config(image: str) -> dict[str, Any]:
    out = docker("image", "inspect", image, check=True).stdout
    config: dict[str, Any] = json.loads(out)[0]["Config"]
    return config


@pytest.fixture(scope="session")
def image_files(image: str) -> dict[str, str]:
    """Every path in the image's file system -> its tar type ('-' file, 'l' link, 'd' dir)."""
    name = f"allocscope-test-{uuid.uuid4().hex[:12]}"
    docker("create", "--network", "none", "--name", name, image, check=True)
    try:
        exported = subprocess.run(
            f"docker export {name} | tar -tv",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        docker("rm", "-f", name)
    files = {}
    for line in exported.stdout.splitlines():
        fields = line.split(None, 5)
        path = fields[5].split(" -> ")[0]
        files[path.rstrip("/")] = fields[0][0]
    return files


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A host directory the container's nonroot user (65532) can read when mounted."""
    path = Path(tempfile.mkdtemp(prefix="allocscope-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def python_tag(image_config: dict[str, Any]) -> str:
    """The image's CPython cache tag (cpython-314), as its build labelled it."""
    tag: str = image_config["Labels"]["allocscope.python.cache_tag"]
    assert re.fullmatch(r"cpython-3\d+", tag), tag
    return tag


@pytest.fixture(scope="session")
def python_xy(python_tag: str) -> str:
    """'3.14' for cpython-314."""
    digits = python_tag.removeprefix("cpython-")
    return f"{digits[0]}.{digits[1:]}"
