"""Kubernetes identity from cgroup paths and the kubelet's log directories (real layouts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocscope.inspect import cgroup, kube
from tests.kubelet_layouts import CID, LAYOUTS, OFF_KUBERNETES, Layout, plant_pod_logs


def _runtime_id(layout: Layout) -> str:
    return next(cid for cid in CID.values() if cid in layout.cgroup)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_each_runtime_and_driver_names_the_pod(layout: Layout, tmp_path: Path) -> None:
    # A second pod and a sidecar in the same pod: the container id must pick the name.
    plant_pod_logs(
        tmp_path,
        [
            (layout.namespace, layout.pod, layout.uid,
             {layout.container: _runtime_id(layout), "istio-proxy": "e1" * 32}),
            ("other", "other-pod", "00000000-0000-4000-8000-000000000000", {"x": "f0" * 32}),
        ],
    )  # fmt: skip
    box, _ = cgroup.container(layout.cgroup, str(tmp_path / "no-cgroupfs"))
    found = kube.PodLogs.read(str(tmp_path)).identify(box.cgroup)
    assert found == kube.PodIdentity(
        layout.namespace, layout.pod, layout.uid, layout.container, layout.workload, layout.qos
    )


@pytest.mark.parametrize("text", OFF_KUBERNETES)
def test_off_kubernetes_there_is_no_pod(text: str, tmp_path: Path) -> None:
    box, _ = cgroup.container(text, str(tmp_path))
    assert kube.PodLogs.read(str(tmp_path)).identify(box.cgroup) is None


def test_without_the_logs_the_uid_and_qos_are_still_known() -> None:
    layout = LAYOUTS[0]
    box, _ = cgroup.container(layout.cgroup, "/nonexistent")
    found = kube.PodLogs.read(None).identify(box.cgroup)
    assert found == kube.PodIdentity("", "", layout.uid, "", "", "burstable")


def test_one_container_pod_needs_no_container_symlink(tmp_path: Path) -> None:
    layout = LAYOUTS[0]
    plant_pod_logs(tmp_path, [(layout.namespace, layout.pod, layout.uid, {"only": "9" * 64})])
    found = kube.PodLogs.read(str(tmp_path)).identify(kube_path(layout))
    assert found is not None and found.container == "only"


def kube_path(layout: Layout) -> str:
    return layout.cgroup.splitlines()[0].split(":", 2)[2]


def test_a_process_in_the_pod_cgroup_but_no_container_is_still_the_pods() -> None:
    uid = LAYOUTS[0].uid
    found = kube.from_cgroup(f"/kubepods/burstable/pod{uid}/crio-conmon-{'b7c9' * 16}")
    assert found == kube.CgroupPod(uid, "burstable", "", "")


@pytest.mark.parametrize(
    ("pod", "workload"),
    [
        ("checkout-7d9fb8c5d4-x2v9q", "checkout"),  # Deployment: ReplicaSet hash + suffix
        ("api-server-6b4d5f8c9-zt7kx", "api-server"),  # a 9-character hash
        ("node-exporter-4xk2p", "node-exporter"),  # DaemonSet
        ("ledger-0", "ledger"),  # StatefulSet
        ("redis-cluster-12", "redis-cluster"),
        ("standalone", "standalone"),  # a bare pod is its own workload
        ("web-a1b2c-xyzab", "web-a1b2c-xyzab"),  # vowels and 1: not a generated suffix
    ],
)
def test_workload_from_the_pod_name(pod: str, workload: str) -> None:
    assert kube.workload_of(pod) == workload


def test_log_directories_in_other_shapes_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "pods" / "no-underscores").mkdir(parents=True)
    (tmp_path / "pods" / "ns_pod_short-uid").mkdir()
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "garbage.log").write_text("")
    logs = kube.PodLogs.read(str(tmp_path))
    assert logs.pods == {} and logs.containers == {}
