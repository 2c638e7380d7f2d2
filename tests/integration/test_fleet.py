"""allocscope fleet against a real Prometheus scraping three simulated nodes' agents."""

from __future__ import annotations

import csv
import ctypes
import http.server
import io
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_allocscope
from tests.integration.fleet_nodes import Fleet, query, simulated_fleet
from tests.integration.targets import free_port, wait_for
from tests.integration.test_probe_fips import fips_dir

__all__ = ["fips_dir"]  # the session fixture, shared


MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "allocscope-agent-rules.yml"
DASHBOARD = MONITORING / "allocscope-agent-dashboard.json"


@pytest.fixture(scope="module")
def fleet(fips_dir: Path) -> Iterator[Fleet]:
    with simulated_fleet(fips_dir, rules=(RULES,)) as running:
        yield running


def audit(fleet: Fleet, *flags: str) -> tuple[int, dict[str, Any]]:
    proc = run_allocscope("fleet", "--prometheus", fleet.prometheus, "--window", "1m", "--json",
                          *flags)  # fmt: skip
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{w['where']}/{w['name']}": w for w in doc["workloads"]}


def kinds(workload: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in workload["findings"]}


def test_the_agents_label_each_process_with_its_pod(fleet: Fleet) -> None:
    found = {
        (s["metric"]["namespace"], s["metric"]["pod"], s["metric"]["container"],  # type: ignore[index]
         s["metric"]["workload"], s["metric"]["pod_uid"])  # type: ignore[index]
        for s in query(fleet.prometheus, "allocscope_process_kubernetes_info")
    }  # fmt: skip
    planted = {
        (p.namespace, p.pod, p.container, p.pod.rsplit("-", 2)[0] if p.pod != "ledger-0"
         else "ledger", p.uid)
        for pods in fleet.planted.values() for p in pods
    }  # fmt: skip
    assert found == planted
    qos = {s["metric"]["pod"]: s["metric"]["qos"]  # type: ignore[index]
           for s in query(fleet.prometheus, "allocscope_process_kubernetes_info")}  # fmt: skip
    assert qos["checkout-7d9fb8c5d4-x2v9q"] == "burstable"
    assert qos["api-6b4d5f8c9-zt7kx"] == "guaranteed"
    assert qos["ledger-0"] == "besteffort"
    env = query(fleet.prometheus, 'allocscope_process_malloc_env_info{pod="ledger-0"}')
    assert [(s["metric"]["variable"], s["metric"]["value"]) for s in env] == [  # type: ignore[index]
        ("MALLOC_CONF", "background_thread:true")
    ]


def test_each_planted_case_is_found(fleet: Fleet) -> None:
    code, doc = audit(fleet, "--expect-allocator", "jemalloc", "--expect-fips", "enforced")
    assert code == 0  # findings, but no --fail-on
    w = by_name(doc)
    assert sorted(doc["nodes"]) == ["node-a", "node-b", "node-c"]
    # a glibc Deployment: both its pods, on node-a
    assert w["shop/checkout"]["allocators"] == {"glibc 2.36": 2}
    assert kinds(w["shop/checkout"]) == {"allocator"}
    (finding,) = w["shop/checkout"]["findings"]
    assert len(finding["pids"]) == 2 and all(p.startswith("node-a/") for p in finding["pids"])
    # jemalloc without its background thread
    assert kinds(w["shop/api"]) == {"background-thread"}
    # two allocators: jemalloc serves, tcmalloc mapped too
    assert kinds(w["batch/worker"]) == {"two-allocators"}
    # libcrypto without the FIPS provider, beside a pod that has it
    assert kinds(w["payments/gateway"]) == {"fips"}
    assert kinds(w["payments/ledger"]) == set()
    ledger = w["payments/ledger"]["processes"][0]
    assert ledger["fips_provider"] and ledger["background_threads"] >= 1
    # processes outside Kubernetes: grouped by node and command (here, the agents)
    hosts = [x for x in doc["workloads"] if x["kind"] == "host"]
    assert sorted(x["where"] for x in hosts) == ["node-a", "node-b", "node-c"]


def test_without_expectations_only_failures_are_findings(fleet: Fleet) -> None:
    _, doc = audit(fleet)
    found = {name: kinds(x) for name, x in by_name(doc).items() if x["findings"]}
    assert found == {"shop/api": {"background-thread"}, "batch/worker": {"two-allocators"}}


def test_fail_on_gates_a_ci_job(fleet: Fleet) -> None:
    assert audit(fleet, "--fail-on", "two-allocators")[0] == 1
    assert audit(fleet, "--namespace", "shop", "--fail-on", "two-allocators")[0] == 0
    assert audit(fleet, "--namespace", "shop", "--fail-on", "background-thread")[0] == 1


def test_namespace_filter_and_the_other_formats(fleet: Fleet) -> None:
    _, doc = audit(fleet, "--namespace", "payments")
    assert sorted(by_name(doc)) == ["payments/gateway", "payments/ledger"]
    md = run_allocscope("fleet", "--prometheus", fleet.prometheus, "--markdown",
                        "--expect-allocator", "jemalloc")  # fmt: skip
    assert "| shop/checkout | 2 | glibc 2.36 x2 |" in md.stdout
    assert "**shop/checkout**, allocator: 2 pods run glibc, not jemalloc" in md.stdout
    rows = list(
        csv.DictReader(
            io.StringIO(
                run_allocscope(
                    "fleet", "--prometheus", fleet.prometheus, "--csv", "--namespace", "batch"
                ).stdout
            )
        )
    )
    assert [(r["pod"], r["allocator"], r["two_allocators"]) for r in rows] == [
        ("worker-5c7f9d8b6-qp2xw", "jemalloc", "1")
    ]  # fmt: skip


def test_an_empty_namespace_is_no_series(fleet: Fleet) -> None:
    proc = run_allocscope("fleet", "--prometheus", fleet.prometheus, "--namespace", "nope")
    assert proc.returncode == 32
    assert "no allocscope_process_allocator_info series in namespace 'nope'" in proc.stderr
    # Quotes and backslashes are escaped into the selector, not into the query's syntax.
    proc = run_allocscope("fleet", "--prometheus", fleet.prometheus, "--namespace", 'a"} or {x="\\')
    assert proc.returncode == 32, proc.stderr


def test_an_agent_is_not_a_prometheus(fleet: Fleet) -> None:
    port = next(iter(fleet.agents.values()))
    proc = run_allocscope("fleet", "--prometheus", f"http://127.0.0.1:{port}")
    assert proc.returncode == 31, proc.stderr
    assert f"Prometheus at http://127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nothing_listening_is_unreachable() -> None:
    port = free_port()
    proc = run_allocscope("fleet", "--prometheus", f"http://127.0.0.1:{port}")
    assert proc.returncode == 30
    assert f"cannot reach Prometheus at http://127.0.0.1:{port}" in proc.stderr


def test_a_prometheus_that_never_answers_is_unreachable_after_the_timeout() -> None:
    with socket.socket() as silent:  # accepts (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = run_allocscope("fleet", "--prometheus", url, "--timeout", "1")
    assert proc.returncode == 30, proc.stderr
    assert f"cannot reach Prometheus at {url}: timed out" in proc.stderr


@contextmanager
def lone_prometheus(web_config: str | None = None) -> Iterator[str]:
    """A real Prometheus that scrapes nothing (optionally behind basic auth)."""
    with tempfile.TemporaryDirectory(prefix="allocscope-prom-") as work:
        (Path(work) / "p.yml").write_text("global: {scrape_interval: 1m}\n")
        flags = [f"--web.config.file={web_config}"] if web_config else []
        port = free_port()
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={work}/p.yml", f"--storage.tsdb.path={work}/db",
             f"--web.listen-address=127.0.0.1:{port}", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(lambda: _answers(port), timeout=60, what="prometheus")
            yield f"http://127.0.0.1:{port}"
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_prometheus_without_agents_is_no_series() -> None:
    with lone_prometheus() as url:
        proc = run_allocscope("fleet", "--prometheus", url)
    assert proc.returncode == 32
    assert "is it scraping the allocscope agents" in proc.stderr


def bcrypt(password: str) -> str:
    """A bcrypt hash for Prometheus's web config, from Debian's libxcrypt (libcrypt.so.1)."""
    libcrypt = ctypes.CDLL("libcrypt.so.1")
    libcrypt.crypt_gensalt.argtypes = [
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libcrypt.crypt.restype = ctypes.c_char_p
    salt = libcrypt.crypt_gensalt(b"$2b$", 5, None, 0)
    hashed: bytes = libcrypt.crypt(password.encode(), salt)
    assert hashed.startswith(b"$2b$05$"), hashed
    return hashed.decode()


def test_basic_auth_is_sent_and_a_refusal_is_a_query_error(tmp_path: Path) -> None:
    hashed = bcrypt("s3cret")
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  audit: '{hashed}'\n")
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")
    with lone_prometheus(str(config)) as url:
        wrong = run_allocscope("fleet", "--prometheus", url, "--basic-auth-user", "audit",
                               "--basic-auth-password-file", str(tmp_path / "bad"))  # fmt: skip
        right = run_allocscope("fleet", "--prometheus", url, "--basic-auth-user", "audit",
                               "--basic-auth-password-file", str(tmp_path / "good"))  # fmt: skip
    assert wrong.returncode == 31 and "answered HTTP 401" in wrong.stderr
    assert right.returncode == 32  # let in: it holds no agent series


def test_https_is_verified_against_the_ca_file(tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'cert.pem'}\n"
        f"  key_file: {tmp_path / 'key.pem'}\n"
    )
    with lone_prometheus(str(config)) as url:
        https = url.replace("http:", "https:")
        unknown = run_allocscope("fleet", "--prometheus", https)
        trusted = run_allocscope("fleet", "--prometheus", https, "--ca-file",
                                 str(tmp_path / "cert.pem"))  # fmt: skip
    assert unknown.returncode == 30 and "CERTIFICATE_VERIFY_FAILED" in unknown.stderr
    assert trusted.returncode == 32, trusted.stderr  # verified, let in: no agent series


def test_the_bearer_token_is_sent(tmp_path: Path) -> None:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    (tmp_path / "token").write_text("t0ken\n")
    with http.server.HTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = run_allocscope("fleet", "--prometheus", url, "--bearer-token-file",
                              str(tmp_path / "token"))  # fmt: skip
        server.shutdown()
    assert proc.returncode == 32, proc.stderr
    assert seen and set(seen) == {"Bearer t0ken"}


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    assert run_allocscope("fleet", "--prometheus", "127.0.0.1:9090").returncode == 2
    proc = run_allocscope("fleet", "--prometheus", "http://127.0.0.1:1", "--fail-on", "oops")
    assert proc.returncode == 2 and "unknown finding oops" in proc.stderr
    proc = run_allocscope("fleet", "--prometheus", "http://127.0.0.1:1",
                          "--bearer-token-file", str(tmp_path / "missing"))  # fmt: skip
    assert proc.returncode == 3 and "cannot read the token file" in proc.stderr
    proc = run_allocscope("fleet", "--prometheus", "http://127.0.0.1:1", "--window", "1 hour")
    assert proc.returncode == 2 and "--window: not a Prometheus duration" in proc.stderr


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_the_agent_rules_pass_promtool_and_their_unit_tests() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0 and "SUCCESS: 10 rules found" in out.stdout, out.stdout + out.stderr
    out = promtool("test", "rules", str(MONITORING / "tests" / "allocscope-agent-rules.test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def _dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    variables = [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    # label_values(SELECTOR, label) is Grafana's: the selector is what Prometheus sees.
    exprs += [re.sub(r"^label_values\((.*), \w+\)$", r"\1", v) for v in variables]
    return [re.sub(r"\$\{?(namespace|workload)\}?", ".*", e) for e in exprs]


def test_the_dashboard_queries_parse_and_name_only_series_that_exist(fleet: Fleet) -> None:
    queries = _dashboard_queries()
    assert len(queries) == 12
    wait_for(lambda: bool(query(fleet.prometheus, "allocscope:workload_rss_growth_bytes:delta1h")),
             what="recording rules")  # fmt: skip
    for expr in queries:  # query() raises on an expression Prometheus cannot parse (HTTP 400)
        query(fleet.prometheus, expr)
    names = {n for e in queries for n in re.findall(r"\b(allocscope[a-z0-9_:]*)", e)}
    assert "allocscope_process_jemalloc_background_threads" in names
    missing = [n for n in sorted(names) if not query(fleet.prometheus, f"count({n})")]
    assert missing == []
    # The panels show the planted cases.
    idle = query(fleet.prometheus, _panel("jemalloc without its background thread"))
    assert [s["metric"]["workload"] for s in idle] == ["api"]  # type: ignore[index]


def _panel(title: str) -> str:
    doc = json.loads(DASHBOARD.read_text())
    (expr,) = [p["targets"][0]["expr"] for p in doc["panels"] if p["title"] == title]
    return re.sub(r"\$\{?(namespace|workload)\}?", ".*", str(expr))


def test_the_alert_expressions_evaluate_against_the_real_series(fleet: Fleet) -> None:
    import yaml

    doc = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    wait_for(lambda: bool(query(fleet.prometheus, "allocscope:workload_processes:count")),
             what="recording rules")  # fmt: skip
    firing = {name: query(fleet.prometheus, expr) for name, expr in alerts.items()}
    workloads = {
        name: sorted(str(s["metric"].get("workload")) for s in found)  # type: ignore[union-attr]
        for name, found in firing.items()
    }
    assert workloads["AllocscopeWorkloadNotOnExpectedAllocator"] == ["checkout"]
    assert workloads["AllocscopeJemallocWithoutBackgroundThread"] == ["api"]
    assert workloads["AllocscopeTwoAllocatorsMapped"] == ["worker"]
    assert workloads["AllocscopeLibcryptoWithoutFipsProvider"] == ["gateway"]
    assert workloads["AllocscopeWorkloadRssGrowth"] == []  # sleepers do not grow
