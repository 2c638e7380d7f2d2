"""Three simulated Kubernetes nodes and a real Prometheus scraping their agents.

Each "node" is a PID and mount namespace (``unshare``): its own /proc, the kubelet's log
tree bind-mounted at /var/log, real processes placed in real cgroups named as each
runtime and driver names them (tests/kubelet_layouts.py), and an allocscope agent as the
namespace's pid 1 (when it ends, the kernel ends every process of that node). Debian's
Prometheus, on loopback, scrapes the three agents every second.

    .venv/bin/python -m tests.integration.fleet_nodes [allocscope fleet flags...]

runs the whole thing once and prints `allocscope fleet`'s answer (docs/how-to/fleet.md).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from allocscope import libraries
from tests.conftest import child_env
from tests.integration.targets import free_port, wait_for
from tests.kubelet_layouts import plant_pod_logs

SLEEP = "import time; time.sleep(900)"
CRYPTO = "import hashlib, ssl, time; hashlib.sha256(b'x'); time.sleep(900)"


@dataclass(frozen=True)
class Planted:
    namespace: str
    pod: str
    uid: str
    container: str
    cgroup: str  # relative to the test's own cgroup: runtime and driver layout
    code: str  # python -c
    env: dict[str, str] = field(default_factory=dict)

    @property
    def container_id(self) -> str:
        return self.cgroup.rstrip("/").rsplit("-", 1)[-1].removesuffix(".scope")[-64:]


def _systemd(qos: str, uid: str, runtime: str, cid: str) -> str:
    slice_ = f"kubepods-{qos}" if qos else "kubepods"
    qos_slice = f"kubepods-{qos}.slice/" if qos else ""
    return (
        f"kubepods.slice/{qos_slice}{slice_}-pod{uid.replace('-', '_')}.slice/{runtime}-{cid}.scope"
    )


def nodes(fips_dir: Path | None) -> dict[str, list[Planted]]:
    """The planted cases: what each node runs (namespaces, pods and their processes)."""
    jemalloc = libraries.find("jemalloc") or "libjemalloc.so.2"
    tcmalloc = libraries.find("tcmalloc") or "libtcmalloc_minimal.so.4"
    fips = (
        {
            "OPENSSL_CONF": str(fips_dir / "openssl-fips.cnf"),
            "OPENSSL_MODULES": str(fips_dir / "ossl-modules"),
        }
        if fips_dir is not None
        else {}
    )
    u = [f"{n:08x}-1111-4222-8333-{n:012x}" for n in range(1, 9)]
    c = [f"{n:02x}" * 32 for n in range(0xA1, 0xA9)]
    return {
        "node-a": [  # containerd, systemd driver
            Planted("shop", "checkout-7d9fb8c5d4-x2v9q", u[0], "app",
                    _systemd("burstable", u[0], "cri-containerd", c[0]), SLEEP),
            Planted("shop", "checkout-7d9fb8c5d4-m4kzt", u[1], "app",
                    _systemd("burstable", u[1], "cri-containerd", c[1]), SLEEP),
        ],
        "node-b": [  # CRI-O, systemd driver
            Planted("shop", "api-6b4d5f8c9-zt7kx", u[2], "api",
                    _systemd("", u[2], "crio", c[2]), SLEEP, {"LD_PRELOAD": jemalloc}),
            Planted("payments", "ledger-0", u[3], "ledger",
                    _systemd("besteffort", u[3], "crio", c[3]), CRYPTO,
                    {"LD_PRELOAD": jemalloc, "MALLOC_CONF": "background_thread:true", **fips}),
        ],
        "node-c": [  # containerd, cgroupfs driver
            Planted("batch", "worker-5c7f9d8b6-qp2xw", u[4], "worker",
                    f"kubepods/burstable/pod{u[4]}/{c[4]}", SLEEP,
                    {"LD_PRELOAD": f"{jemalloc}:{tcmalloc}",
                     "MALLOC_CONF": "background_thread:true"}),
            Planted("payments", "gateway-7f8d9c6b5-wx4rt", u[5], "gateway",
                    f"kubepods/pod{u[5]}/{c[5]}", CRYPTO,
                    {"LD_PRELOAD": jemalloc, "MALLOC_CONF": "background_thread:true"}),
        ],
    }  # fmt: skip


def _cgroup_base() -> Path:
    """A directory of our own in a writable cgroup hierarchy (v1 memory, else v2)."""
    with open("/proc/self/cgroup", encoding="ascii") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    v1 = next((p for _, c, p in lines if "memory" in c.split(",")), None)
    if v1 is not None and os.path.isdir("/sys/fs/cgroup/memory"):
        return Path("/sys/fs/cgroup/memory" + v1.rstrip("/"))
    v2 = next(p for n, c, p in lines if c == "")
    return Path("/sys/fs/cgroup" + v2.rstrip("/"))


@dataclass
class Fleet:
    prometheus: str  # its URL
    agents: dict[str, int]  # node -> agent port
    planted: dict[str, list[Planted]]


def _remove_cgroups(top: Path) -> None:
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with suppress(OSError):
            d.rmdir()
    with suppress(OSError):
        top.rmdir()


def _node_script(node: str, port: int, logs: Path, cgroups: Path, planted: list[Planted]) -> str:
    lines = ["set -e", f"mount --bind {shlex.quote(str(logs))} /var/log"]
    for p in planted:
        cg = shlex.quote(str(cgroups / p.cgroup))
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in p.env.items())
        run = f"exec env {env} {shlex.quote(sys.executable)} -c {shlex.quote(p.code)}"
        lines.append(f"sh -c {shlex.quote(f'echo $$ > {cg}/cgroup.procs && {run}')} &")
    lines.append(
        f"exec {shlex.quote(sys.executable)} -m allocscope agent --port {port} --node {node}"
        " --top 100"
    )
    return "\n".join(lines) + "\n"


@contextmanager
def simulated_fleet(
    fips_dir: Path | None, rules: tuple[Path, ...] = (), scrape_interval: str = "1s"
) -> Iterator[Fleet]:
    """Three nodes, their agents and a Prometheus (with ``rules`` loaded); everything
    ends on the way out."""
    planted = nodes(fips_dir)
    work = Path(tempfile.mkdtemp(prefix="allocscope-fleet-"))
    cgroups = _cgroup_base() / f"allocscope-fleet-{os.getpid()}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        agents = {}
        for node, pods in planted.items():
            logs = work / node / "var-log"
            plant_pod_logs(logs, [(p.namespace, p.pod, p.uid, {p.container: p.container_id})
                                  for p in pods])  # fmt: skip
            for p in pods:
                (cgroups / p.cgroup).mkdir(parents=True, exist_ok=True)
            port = free_port()
            script = work / node / "node.sh"
            script.write_text(_node_script(node, port, logs, cgroups, pods))
            log = open(work / node / "agent.log", "wb")  # noqa: SIM115 (closed with the process)
            procs.append(subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--kill-child",
                 "sh", str(script)],
                env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
            log.close()
            agents[node] = port
        prom_port = free_port()
        targets = json.dumps([f"127.0.0.1:{p}" for p in agents.values()])
        (work / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {scrape_interval},"
            f" evaluation_interval: {scrape_interval}}}\n"
            f"rule_files: {json.dumps([str(r) for r in rules])}\n"
            "scrape_configs:\n"
            "  - job_name: allocscope-agent\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: {targets}}}]\n"
        )
        log = open(work / "prometheus.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip
        log.close()
        url = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: _all_scraped(url, len(agents)), timeout=90, what="prometheus")
        yield Fleet(url, agents, planted)
    finally:
        for proc in reversed(procs):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        time.sleep(0.2)  # the namespaces' processes are reaped by the kernel
        _remove_cgroups(cgroups)
        shutil.rmtree(work, ignore_errors=True)


def query(url: str, expr: str) -> list[dict[str, object]]:
    body = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{body}", timeout=10) as r:
        result: list[dict[str, object]] = json.load(r)["data"]["result"]
        return result


def _all_scraped(url: str, n: int) -> bool:
    """Every agent up, and its pods in Prometheus (two scrapes: the growth has a range)."""
    try:
        pods = query(url, "count by (instance) (allocscope_process_kubernetes_info)")
        scrapes = query(url, "count_over_time(up[1m])")
    except OSError:
        return False
    return len(pods) == n and all(float(s["value"][1]) >= 2 for s in scrapes)  # type: ignore[index]


if __name__ == "__main__":
    from allocscope.cli import main

    fips = os.environ.get("ALLOCSCOPE_FIPS_DIR")
    with simulated_fleet(Path(fips) if fips else None) as fleet:
        print(f"$ allocscope fleet --prometheus {fleet.prometheus} {' '.join(sys.argv[1:])}")
        sys.stdout.flush()
        code = main(["fleet", "--prometheus", fleet.prometheus, *sys.argv[1:]])
        print(f"exit {code}")
