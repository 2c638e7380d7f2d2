"""The image serving on loopback (--network host): endpoints, hardening, health, stop."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.container.dockerlib import DEMO_MALLOC_CONF, SLOW, docker, service

pytestmark = [pytest.mark.container, SLOW]

HARDENED = (
    "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
)  # fmt: skip


def test_serves_jemalloc_and_fips_enforced(image: str, python_tag: str, python_xy: str) -> None:
    with service(image) as c:
        c.wait_serving()
        root = c.get("/")
        assert root.status == 200
        info = root.json()
        assert info["allocator_name"] == "jemalloc"
        assert info["allocator"].startswith("jemalloc 5.") and "LD_PRELOAD" in info["allocator"]
        assert info["ld_preload"] == "/usr/lib/libjemalloc.so.2"
        assert info["malloc_conf"] == DEMO_MALLOC_CONF
        assert info["fips"]["state"] == "enforced"
        assert info["python_version"].startswith(f"{python_xy}.")
        assert info["server"].startswith("granian ")
        assert info["rss_bytes"] > 0

        ready = c.get("/readyz")
        assert ready.status == 200, ready.body
        assert c.get("/healthz").status == 200

        metrics = c.get("/metrics")
        assert metrics.status == 200
        families = {f.name: f for f in text_string_to_metric_families(metrics.body.decode())}
        alloc = families["allocscope_allocator_info"].samples[0].labels
        assert alloc["name"] == "jemalloc" and alloc["source"] == "LD_PRELOAD"
        fips = {s.labels["state"]: s.value for s in families["allocscope_fips_state"].samples}
        assert fips["enforced"] == 1

        # The launcher's one JSON line: every start-up check ran and passed.
        launch = next(
            json.loads(line)
            for line in c.logs().splitlines()
            if line.startswith("{") and '"event":"launch"' in line
        )
        assert launch["checks"] == {
            "allocator": True, "fips": True, "preload": True, "malloc_conf": True,
            "background_thread": True,
        }  # fmt: skip
        assert launch["bind_check"] == [f"127.0.0.1:{c.port}"]
        assert launch["vendor"] == f"/app/vendor/{python_tag}"
        assert launch["vendor_match"] == "exact"
        assert launch["host"] == "127.0.0.1"


def test_hardened_run_turns_healthy_and_stops_fast(image: str) -> None:
    with service(
        image, *HARDENED, "--health-interval", "1s", "--health-timeout", "10s",
        "--health-start-period", "30s",
    ) as c:  # fmt: skip
        c.wait_serving()
        assert c.get("/").json()["fips"]["state"] == "enforced"
        health = c.wait_health("healthy", deadline_s=60)
        last = health["Log"][-1]
        assert last["ExitCode"] == 0, last

        host = c.inspect()["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]

        started = time.monotonic()
        docker("stop", c.name, timeout=30, check=True)
        took = time.monotonic() - started
        state = c.inspect()["State"]
        assert not state["Running"]
        assert took < 2.0, f"docker stop took {took:.2f}s"
        assert state["ExitCode"] == 0, c.logs()
