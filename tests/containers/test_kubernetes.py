"""docker/k8s, offline: each overlay renders (non-empty), validates strictly against two
Kubernetes versions, and keeps the deployment's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers.tools import K8S, need, run

pytestmark = pytest.mark.container

OVERLAYS = ("cpu", "gpu")
VERSIONS = ("1.30.0", "1.34.0")
RUNNERS = {"onnx", "jax", "tfserving", "torchserve"}


def render(overlay: str) -> str:
    done = run([need("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders_and_validates(overlay: str, version: str, tmp_path: Path) -> None:
    rendered = render(overlay)
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    # kubernetes-validate passes empty input: check that there is something to validate.
    assert kinds.count("Deployment") == 5 and "HorizontalPodAutoscaler" in kinds, kinds
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered)
    done = run([need("kubernetes-validate"), "--strict", "-k", version, str(manifest)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed for resource") == len(kinds)


def test_strict_validation_can_fail(tmp_path: Path) -> None:
    """The validator is no rubber stamp: an unknown field under --strict is an error."""
    docs = objects("cpu")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    done = run([need("kubernetes-validate"), "--strict", "-k", VERSIONS[0], str(bad)])
    assert done.returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_runners_sit_behind_headless_services(overlay: str) -> None:
    services = by_kind(objects(overlay), "Service")
    assert set(services) == {"gateway", *RUNNERS}
    for name in RUNNERS:
        assert services[name]["spec"]["clusterIP"] == "None", name
    assert "clusterIP" not in services["gateway"]["spec"]
    # The gateway asks DNS for every pod behind each headless Service, and balances.
    gateway = by_kind(objects(overlay), "Deployment")["gateway"]["spec"]["template"]["spec"]
    endpoints = dict(
        a.removeprefix("--runner-endpoint=").split("=", 1)
        for a in gateway["containers"][0]["args"]
        if a.startswith("--runner-endpoint=")
    )
    for kind, endpoint in endpoints.items():
        host, _, port = endpoint.removeprefix("dns:///").rpartition(":")
        assert endpoint.startswith("dns:///") and host == kind, endpoint
        assert int(port) == services[kind]["spec"]["ports"][0]["port"], endpoint
    assert set(endpoints) == RUNNERS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_real_health_endpoints(overlay: str) -> None:
    deployments = by_kind(objects(overlay), "Deployment")
    gateway = deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["SERVEGATE_HEALTH_SCOPE"] == "open"  # probes send no key
    for name in ("onnx", "jax"):  # our runners: grpc.health.v1
        main = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert main[probe]["grpc"]["port"] == 8500, (name, probe)
    torchserve = deployments["torchserve"]["spec"]["template"]["spec"]["containers"][0]
    assert torchserve["readinessProbe"]["exec"]["command"][-1] == "/etc/torchserve/health.py"
    tfserving = deployments["tfserving"]["spec"]["template"]["spec"]["containers"][0]
    assert tfserving["readinessProbe"]["exec"]["command"][-1] == "/etc/tfserving/health.sh"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_bounded_and_unprivileged(overlay: str) -> None:
    docs = objects(overlay)
    workloads = [*by_kind(docs, "Deployment").values(), *by_kind(docs, "Job").values()]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000
        for c in containers(workload):
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert ":" in c["image"] and not c["image"].endswith(":latest"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_disruption_keys_and_models(overlay: str) -> None:
    docs = objects(overlay)
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"gateway", *RUNNERS}
    gateway = by_kind(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in gateway["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "servegate-api-keys"
    job = by_kind(docs, "Job")["servegate-models"]["spec"]["template"]["spec"]
    assert job["volumes"][0]["persistentVolumeClaim"]["claimName"] == "servegate-models"
    for name in RUNNERS:
        pod = by_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]
        claim = next(v for v in pod["volumes"] if v["name"] == "models")
        assert claim["persistentVolumeClaim"] == {"claimName": "servegate-models", "readOnly": True}
        assert pod["initContainers"][0]["name"] == "wait-for-models"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_reaches_runners(overlay: str) -> None:
    policies = by_kind(objects(overlay), "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    runners = policies["runners"]["spec"]
    assert runners["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "runner"}
    sources = [rule["from"] for rule in runners["ingress"]]
    gateway_only = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    assert sources[0] == gateway_only
    assert {p["port"] for p in runners["ingress"][1]["ports"]} == {8082}  # metrics only
    assert runners["egress"] == []


def test_gpu_overlay_gives_every_runner_a_gpu() -> None:
    deployments = by_kind(objects("gpu"), "Deployment")
    for name in RUNNERS:
        main = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert main["resources"]["limits"]["nvidia.com/gpu"] == 1, name
    images = {
        n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in deployments.items()
    }
    assert images["onnx"].startswith("servegate/onnx-gpu:")
    assert images["jax"].startswith("servegate/jax-gpu:")
    assert images["tfserving"].endswith("-gpu") and images["torchserve"].endswith("-gpu")
    cpu = by_kind(objects("cpu"), "Deployment")
    assert not any("nvidia.com/gpu" in str(d) for d in cpu.values())
