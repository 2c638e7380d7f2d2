"""The agent's DaemonSets, validated offline against the Kubernetes schemas (strict)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

AGENT = Path(__file__).resolve().parents[2] / "deploy" / "agent"
K8S_VERSION = "1.30.0"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((AGENT / name).read_text())
    return doc


@pytest.mark.parametrize("name", ["daemonset.yaml", "daemonset-attach.yaml"])
@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.utils.latest_version()])
def test_daemonsets_match_the_kubernetes_schemas(name: str, version: str) -> None:
    doc = load(name)
    assert doc["kind"] == "DaemonSet"
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    doc = load("daemonset.yaml")
    doc["spec"]["template"]["spec"]["hostPid"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_passive_agent_is_unprivileged() -> None:
    doc = load("daemonset.yaml")
    spec = doc["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["automountServiceAccountToken"] is False
    sc = _container(doc)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert _container(doc)["command"][-1] == "agent"


def test_attach_variant_adds_only_sys_ptrace() -> None:
    passive, attach = load("daemonset.yaml"), load("daemonset-attach.yaml")
    sc = _container(attach)["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert _container(attach)["args"] == _container(passive)["args"]
    kustomization = yaml.safe_load((AGENT / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["daemonset.yaml"]  # attach is opt-in


@pytest.mark.parametrize("name", ["daemonset.yaml", "daemonset-attach.yaml"])
def test_the_kubelets_log_directories_are_mounted_read_only_where_the_agent_looks(
    name: str,
) -> None:
    doc = load(name)
    container = _container(doc)
    args = container["args"]
    root = args[args.index("--pod-logs") + 1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
    for volume, sub in (("pod-logs", "pods"), ("container-logs", "containers")):
        assert mounts[volume]["mountPath"] == f"{root}/{sub}"
        assert mounts[volume]["readOnly"] is True
        assert volumes[volume]["hostPath"]["path"] == f"/var/log/{sub}"
    (node,) = [e for e in container["env"] if e["name"] == "NODE_NAME"]
    assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
