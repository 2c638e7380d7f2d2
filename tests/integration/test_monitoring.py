"""deploy/monitoring/ with the real tools: promtool (rules, unit tests, metrics lint) and a
real Prometheus server scraping a real gunicorn Flask app (2 workers) that uses the collector.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.appservers import REPO, gunicorn, port_of, serve
from tests.integration.service_server import HOST, SERVE, free_port, serving, stop

MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "allocscope-rules.yml"
DASHBOARD = MONITORING / "allocscope-dashboard.json"
BG = "background_thread:true"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-system-deps.sh (prometheus)")
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_rules_pass_promtool_check() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout


def test_rules_pass_their_unit_tests_on_synthetic_series() -> None:
    tests = sorted(str(p) for p in (MONITORING / "tests").glob("*.yml"))
    assert tests
    out = promtool("test", "rules", *tests)
    assert out.returncode == 0, out.stdout + out.stderr


def lint(text: str) -> subprocess.CompletedProcess[str]:
    return promtool("check", "metrics", stdin=text)


def test_promtool_lints_what_it_should() -> None:
    # The check can fail: a counter without _total and without help is refused.
    assert lint("# TYPE foo counter\nfoo 1\n").returncode != 0


def test_real_metrics_pass_promtool_check_metrics(jemalloc: str) -> None:
    command = gunicorn("gthread", "-c", "python:allocscope.gunicorn_conf")
    with serve(command, LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as server:
        app = server.get("/metrics").body.decode()
        mounted = server.get("/allocscope/metrics").body.decode()
    with serving(SERVE, env=None, LD_PRELOAD=jemalloc, MALLOC_CONF=BG) as service:
        own = service.get("/metrics").body.decode()
    for text in (app, mounted, own):
        assert "allocscope_allocator_info{" in text
        out = lint(text)
        assert out.returncode == 0, out.stdout + out.stderr


@contextmanager
def prometheus(target: str, metrics_path: str) -> Iterator[str]:
    """A real Prometheus on loopback with a temp config and storage; yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="allocscope-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "app",
                            "metrics_path": metrics_path,
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        log = open(Path(tmp) / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp}/data", f"--web.listen-address={HOST}:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
        try:
            yield f"http://{HOST}:{port}"
        except BaseException:
            print((Path(tmp) / "prometheus.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            stop(proc)
            log.close()


def query(base: str, promql: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            doc: dict[str, Any] = json.load(r)
    except urllib.error.HTTPError as e:  # 400/422: the expression, with Prometheus's reason
        doc = json.load(e)
    return doc


def wait_for(base: str, promql: str, count: int, timeout: float = 45) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            result = query(base, promql)["data"]["result"]
        except (OSError, KeyError):  # not up yet
            result = []
        if len(result) >= count:
            return result
        time.sleep(0.5)
    pytest.fail(f"{promql}: {len(result)} series after {timeout} s, wanted {count}: {result}")


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    # Grafana's variables, as Grafana would substitute "All".
    return [
        re.sub(r"\$\{?(job|instance)\}?", ".*", e).replace("$__rate_interval", "1m") for e in exprs
    ]


def test_a_real_prometheus_scrapes_every_worker(jemalloc: str, tmp_path: Path) -> None:
    command = gunicorn("sync", "-c", "python:allocscope.gunicorn_conf")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "ALLOCSCOPE_PUBLISH_INTERVAL": "0.5"}
    with serve(command, LD_PRELOAD=jemalloc, MALLOC_CONF=BG, **env) as server:
        workers = {str(p.pid) for p in psutil.Process(server.proc.pid).children()}
        target = f"{HOST}:{port_of(command)}"
        with prometheus(target, "/allocscope/metrics") as base:
            series = wait_for(base, 'allocscope_allocator_info{job="app"}', 2)
            held = wait_for(base, "allocscope:allocator_held_bytes", 2)
            running = query(base, "allocscope_jemalloc_background_thread == 1")["data"]["result"]
            answers = {e: query(base, e) for e in dashboard_queries()}
    assert {s["metric"]["pid"] for s in series} == workers
    assert all(s["metric"]["name"] == "jemalloc" for s in series)
    assert {s["metric"]["pid"] for s in held} == workers  # the recording rules ran
    assert {s["metric"]["pid"] for s in running} == workers  # the hook kept the thread
    bad = {e: a.get("error") for e, a in answers.items() if a.get("status") != "success"}
    assert not bad, bad
