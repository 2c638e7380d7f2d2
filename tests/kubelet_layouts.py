"""Real node layouts: /proc/PID/cgroup as each runtime and cgroup driver writes it, and
the kubelet's log directories. Shared by the unit tests and the fleet's real run.

Path shapes, as the kubelet (pkg/kubelet/cm, cgroup_manager_linux.go: the systemd
driver escapes the pod uid's '-' as '_') and the runtimes name them: containerd's CRI
plugin ``cri-containerd-<id>.scope`` under systemd, the bare id under cgroupfs; CRI-O
``crio-<id>.scope`` / ``crio-<id>`` (its conmon in ``crio-conmon-<id>.scope``);
cri-dockerd ``docker-<id>.scope``. Guaranteed pods sit directly under kubepods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CID = {
    "containerd": "a3f5" * 16,
    "cri-o": "b7c9" * 16,
    "docker": "d2e8" * 16,
    "containerd-ns": "c4d6" * 16,
}


@dataclass(frozen=True)
class Layout:
    name: str
    cgroup: str  # /proc/PID/cgroup, as the kernel shows it
    namespace: str
    pod: str
    uid: str
    container: str
    qos: str
    workload: str


def _systemd(uid: str) -> str:
    return uid.replace("-", "_")


UIDS = {
    "containerd": "6b1d8a7e-6f1c-4d0b-9a55-2b3c1f0e9d11",
    "cri-o": "0f4e2c1a-8d3b-4e5f-a6b7-c8d9e0f1a2b3",
    "docker": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "cgroupfs": "11223344-5566-4778-899a-abbccddeeff0",
    "crio-cgroupfs": "aabbccdd-eeff-4011-a233-445566778899",
    "containerd-ns": "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f",
}

LAYOUTS = [
    # kubeadm on a systemd distribution, cgroup v2: the unified line only.
    Layout(
        "containerd, systemd driver, cgroup v2",
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{_systemd(UIDS['containerd'])}.slice/cri-containerd-{CID['containerd']}.scope\n",
        "shop", "checkout-7d9fb8c5d4-x2v9q", UIDS["containerd"], "app", "burstable", "checkout",
    ),
    # OpenShift (CRI-O, systemd driver), cgroup v1: a line per controller, a Guaranteed pod.
    Layout(
        "CRI-O, systemd driver, cgroup v1",
        "".join(
            f"{n}:{c}:/kubepods.slice/kubepods-pod{_systemd(UIDS['cri-o'])}.slice/"
            f"crio-{CID['cri-o']}.scope\n"
            for n, c in ((12, "memory"), (11, "cpu,cpuacct"), (4, "pids"))
        )
        + "1:name=systemd:/kubepods.slice/kubepods-pod"
        f"{_systemd(UIDS['cri-o'])}.slice/crio-{CID['cri-o']}.scope\n"
        "0::/\n",
        "payments", "ledger-0", UIDS["cri-o"], "ledger", "guaranteed", "ledger",
    ),
    # cri-dockerd (Docker Engine behind the kubelet), systemd driver, cgroup v2.
    Layout(
        "Docker (cri-dockerd), systemd driver, cgroup v2",
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        f"{_systemd(UIDS['docker'])}.slice/docker-{CID['docker']}.scope\n",
        "batch", "report-28391040-tq7zk", UIDS["docker"], "report", "besteffort", "report-28391040",
    ),
    # k3s (containerd, cgroupfs driver), cgroup v1: the bare id.
    Layout(
        "containerd, cgroupfs driver, cgroup v1 (k3s)",
        f"12:memory:/kubepods/besteffort/pod{UIDS['cgroupfs']}/{CID['containerd']}\n"
        f"4:pids:/kubepods/besteffort/pod{UIDS['cgroupfs']}/{CID['containerd']}\n"
        "0::/\n",
        "kube-system", "svclb-traefik-4xk2p", UIDS["cgroupfs"], "lb-tcp-80", "besteffort",
        "svclb-traefik",
    ),
    # CRI-O with the cgroupfs driver, cgroup v2.
    Layout(
        "CRI-O, cgroupfs driver, cgroup v2",
        f"0::/kubepods/burstable/pod{UIDS['crio-cgroupfs']}/crio-{CID['cri-o']}\n",
        "web", "frontend-5b8d7f9c6b-kq2mz", UIDS["crio-cgroupfs"], "nginx", "burstable",
        "frontend",
    ),
    # Seen from the agent's own cgroup namespace (containerd's default on cgroup v2):
    # relative to the agent's container, starting below the QoS slice.
    Layout(
        "containerd, systemd driver, seen from a private cgroup namespace",
        "0::/../../kubepods-besteffort-pod"
        f"{_systemd(UIDS['containerd-ns'])}.slice/cri-containerd-{CID['containerd-ns']}.scope\n",
        "ml", "trainer-6c4f8b9d7-p8w2n", UIDS["containerd-ns"], "trainer", "besteffort", "trainer",
    ),
]  # fmt: skip

OFF_KUBERNETES = [
    "0::/user.slice/user-1000.slice/session-2.scope\n",
    f"0::/system.slice/docker-{CID['docker']}.scope\n",  # a plain Docker container
    "0::/system.slice/containerd.service\n",
    "0::/init.scope\n",
]


def plant_pod_logs(var_log: Path, pods: list[tuple[str, str, str, dict[str, str]]]) -> None:
    """The kubelet's log layout for ``pods`` (namespace, pod, uid, {container: id}):
    /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log, and the symlinks
    /var/log/containers/<pod>_<ns>_<container>-<id>.log pointing at them."""
    (var_log / "containers").mkdir(parents=True, exist_ok=True)
    for namespace, pod, uid, containers in pods:
        pod_dir = var_log / "pods" / f"{namespace}_{pod}_{uid}"
        for name, cid in containers.items():
            (pod_dir / name).mkdir(parents=True, exist_ok=True)
            (pod_dir / name / "0.log").write_text("")
            link = var_log / "containers" / f"{pod}_{namespace}_{name}-{cid}.log"
            if not link.is_symlink():
                os.symlink(pod_dir / name / "0.log", link)
