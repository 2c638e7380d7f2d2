"""A process's Kubernetes identity, from what a node agent reads without API access.

The kubelet names each pod's cgroup after the pod's uid and QoS class, and the runtime
names the container's cgroup after its id:

    systemd driver   /kubepods.slice/kubepods-burstable.slice/
                       kubepods-burstable-pod<uid, '-' as '_'>.slice/cri-containerd-<id>.scope
                     (crio-<id>.scope for CRI-O, docker-<id>.scope for Docker)
    cgroupfs driver  /kubepods/burstable/pod<uid>/<id>   (crio-<id> for CRI-O)
                     Guaranteed pods sit directly under kubepods(.slice).

Seen from inside a cgroup namespace the path starts with '/..', so every pattern is
searched anywhere in the path. The uid leads to the pod's name and namespace through the
kubelet's log directories, /var/log/pods/<namespace>_<pod>_<uid>/<container>/, and the
container id to the container's name through /var/log/containers/<pod>_<namespace>_
<container>-<id>.log (symlinks into the former; only their names are read).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

LOG_ROOT = "/var/log"  # the kubelet's: pods/ and containers/ under it
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(
    rf"(?:^|/)(?:kubepods(?P<sep>[-/])(?:(?P<qos>burstable|besteffort)(?P=sep))?)?"
    rf"pod(?P<uid>{_UID})(?:\.slice)?"
    r"(?:/(?:(?P<runtime>cri-containerd|crio|docker)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?)?(?:/|$)"
)
# The ReplicaSet's pod-template hash and the pod's random suffix draw from the
# apimachinery's SafeEncodeString alphabet (no vowels, no 0/1/3): name-<hash>-<xxxxx>.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_DEPLOYMENT = re.compile(rf"^(?P<owner>.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")
_GENERATED = re.compile(rf"^(?P<owner>.+)-{_SAFE}{{5}}$")  # DaemonSet, Job, ReplicaSet
_ORDINAL = re.compile(r"^(?P<owner>.+)-\d+$")  # StatefulSet


@dataclass(frozen=True)
class PodIdentity:
    namespace: str
    pod: str
    pod_uid: str
    container: str  # the container's name ("" when the pod's logs do not say)
    workload: str  # the pod's owner, derived from its name (see workload_of)
    qos: str  # guaranteed, burstable, besteffort; "" when the path does not say


@dataclass(frozen=True)
class CgroupPod:
    pod_uid: str
    qos: str
    runtime: str  # containerd, cri-o, docker, or "" when the path does not say
    container_id: str  # "" for a process in the pod's cgroup itself


def from_cgroup(path: str) -> CgroupPod | None:
    """The pod a cgroup path belongs to, or None off Kubernetes."""
    found = _POD.search(path)
    if found is None:
        return None
    runtime = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}.get(
        found["runtime"] or "", ""
    )
    return CgroupPod(
        pod_uid=found["uid"].replace("_", "-"),
        # kubepods-pod<uid> or kubepods/pod<uid>: Guaranteed. A relative path (seen from
        # a cgroup namespace) may start below the QoS level: then the class is not known.
        qos=found["qos"] or ("guaranteed" if found["sep"] else ""),
        runtime=runtime,
        container_id=found["id"] or "",
    )


def workload_of(pod: str) -> str:
    """The pod's owner by its name: a Deployment's pods share the prefix before the
    ReplicaSet hash; a DaemonSet's or Job's, before the random suffix; a StatefulSet's,
    before the ordinal. A name in no such shape is its own workload."""
    for shape in (_DEPLOYMENT, _GENERATED, _ORDINAL):
        found = shape.match(pod)
        if found:
            return found["owner"]
    return pod


@dataclass(frozen=True)
class PodLogs:
    """The kubelet's log directories, read once per scrape: uid -> pod, id -> container."""

    pods: dict[str, tuple[str, str, tuple[str, ...]]]  # uid -> (namespace, pod, containers)
    containers: dict[str, str]  # container id (64 hex) -> container name

    @classmethod
    def read(cls, root: str | None) -> PodLogs:
        """From ``root`` (the node's /var/log); empty when it is None or absent."""
        pods: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        containers: dict[str, str] = {}
        if root is None:
            return cls(pods, containers)
        for entry in _listdir(os.path.join(root, "pods")):
            namespace, _, rest = entry.partition("_")
            pod, _, uid = rest.rpartition("_")
            if namespace and pod and len(uid) == 36:
                names = tuple(sorted(_listdir(os.path.join(root, "pods", entry))))
                pods[uid] = (namespace, pod, names)
        for entry in _listdir(os.path.join(root, "containers")):
            stem = entry.removesuffix(".log")
            name, _, cid = stem.rpartition("-")
            if len(cid) == 64 and name.count("_") >= 2:
                containers[cid] = name.rsplit("_", 1)[1]
        return cls(pods, containers)

    def identify(self, cgroup_path: str | None) -> PodIdentity | None:
        """The process's pod, or None off Kubernetes (or when the path names no pod)."""
        found = from_cgroup(cgroup_path) if cgroup_path else None
        if found is None:
            return None
        namespace, pod, names = self.pods.get(found.pod_uid, ("", "", ()))
        container = self.containers.get(found.container_id, "")
        if not container and len(names) == 1:
            container = names[0]  # one container: no doubt which
        return PodIdentity(
            namespace, pod, found.pod_uid, container, workload_of(pod) if pod else "", found.qos
        )


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []  # not mounted: off Kubernetes, or the DaemonSet lacks the mount
