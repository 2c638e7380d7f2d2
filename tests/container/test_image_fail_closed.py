"""Fail closed: a corrupted FIPS module or a wrong LD_PRELOAD path never serves silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.container.dockerlib import SLOW, docker, run_once, service

pytestmark = [pytest.mark.container, SLOW]

FIPSMODULE_CNF = "/etc/ssl/fipsmodule.cnf"


def launch_failure(stderr: str) -> dict[str, Any]:
    lines = [json.loads(x) for x in stderr.splitlines() if x.startswith('{"event":"launch_failed"')]
    assert len(lines) == 1, stderr
    record: dict[str, Any] = lines[0]
    return record


def copy_out(image: str, path: str, dest: Path) -> bytes:
    name = f"allocscope-test-copy-{dest.name}"
    docker("create", "--network", "none", "--name", name, image, check=True)
    try:
        docker("cp", f"{name}:{path}", str(dest), check=True)
    finally:
        docker("rm", "-f", name)
    return dest.read_bytes()


@pytest.fixture(scope="module")
def fips_module_path(image: str) -> str:
    code = "import glob; print(*glob.glob('/usr/lib/**/ossl-modules/fips.so', recursive=True))"
    proc = run_once("--entrypoint", "/usr/bin/python", image, "-c", code)
    paths = proc.stdout.split()
    assert len(paths) == 1, (proc.stdout, proc.stderr)
    return paths[0]


def corrupt(kind: str, image: str, fips_module_path: str, folder: Path) -> tuple[str, str]:
    """(host file, path in the image) of an altered copy of the FIPS module or its config."""
    if kind == "mac":  # the installed MAC no longer matches fips.so
        text = copy_out(image, FIPSMODULE_CNF, folder / "fipsmodule.cnf").decode()
        lines = text.splitlines()
        i = next(n for n, line in enumerate(lines) if line.startswith("module-mac"))
        key, mac = lines[i].split("=", 1)
        first, rest = mac.strip().split(":", 1)
        lines[i] = f"{key}= {'00' if first != '00' else '11'}:{rest}"
        altered = folder / "fipsmodule.cnf"
        altered.write_text("\n".join(lines) + "\n")
        target = FIPSMODULE_CNF
    else:  # one byte of the module itself changed: its integrity check fails
        data = bytearray(copy_out(image, fips_module_path, folder / "fips.so"))
        data[len(data) // 2] ^= 0xFF
        altered = folder / "fips.so"
        altered.write_bytes(bytes(data))
        target = fips_module_path
    altered.chmod(0o644)
    return str(altered), target


@pytest.mark.parametrize("kind", ["mac", "module"])
def test_corrupted_fips_module_fails_closed(
    image: str, fips_module_path: str, shared_dir: Path, kind: str
) -> None:
    host_file, target = corrupt(kind, image, fips_module_path, shared_dir)
    mount = ("-v", f"{host_file}:{target}:ro")

    proc = run_once(*mount, image, timeout=60)
    assert proc.returncode == 114, proc.stderr
    failure = launch_failure(proc.stderr)
    assert failure["error"] == "startup_check_failed"
    assert "fips: expected enforced, but FIPS is off" in failure["message"]
    assert "fips provider is not active" in failure["message"]
    assert [c["name"] for c in failure["failed"]] == ["fips"]
    assert "Listening" not in proc.stderr + proc.stdout

    # The health check's command says the same.
    verify = run_once(*mount, "--entrypoint", "/usr/bin/python", image, "-m", "allocscope",
                      "verify", "-q")  # fmt: skip
    assert verify.returncode == 1
    assert verify.stdout.startswith("FAIL fips: expected enforced, but FIPS is off")


WRONG = "/nope/libjemalloc.so.2"


def test_wrong_preload_fails_closed_at_start(image: str) -> None:
    proc = run_once("-e", f"LD_PRELOAD={WRONG}", image, timeout=60)
    assert proc.returncode == 114, proc.stderr
    failure = launch_failure(proc.stderr)
    names = {c["name"] for c in failure["failed"]}
    assert names == {"allocator", "preload", "malloc_conf"}
    assert f"LD_PRELOAD entries not loaded: '{WRONG}' (no such file)" in failure["message"]
    assert "expected jemalloc, but glibc" in failure["message"]


def test_wrong_preload_reported_by_verify(image: str) -> None:
    proc = run_once("-e", f"LD_PRELOAD={WRONG}", "--entrypoint", "/usr/bin/python", image,
                    "-m", "allocscope", "verify")  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert f"FAIL preload: LD_PRELOAD entries not loaded: '{WRONG}' (no such file)" in lines
    assert any(x.startswith("FAIL allocator: expected jemalloc, but glibc") for x in lines)
    assert any(x.startswith("ok   fips: FIPS is enforced") for x in lines)


def test_wrong_preload_reported_by_readiness_and_healthcheck(image: str) -> None:
    """With the start-up check turned off it serves, but /readyz and the HEALTHCHECK say no."""
    with service(
        image, "--health-interval", "1s", "--health-retries", "1", "--health-timeout", "10s",
        env={"LD_PRELOAD": WRONG, "ALLOCSCOPE_STARTUP_CHECK": "0"},
    ) as c:  # fmt: skip
        c.wait_serving()
        assert c.get("/").json()["allocator_name"] == "glibc"
        ready = c.get("/readyz")
        assert ready.status == 503
        body = ready.json()
        assert body["ready"] is False
        assert any(f"'{WRONG}' (no such file)" in f for f in body["failed"])
        health = c.wait_health("unhealthy", deadline_s=60)
        assert "FAIL preload" in health["Log"][-1]["Output"]
