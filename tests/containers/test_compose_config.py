"""docker/compose*.yaml, statically: every profile and overlay resolves, matches the
compose-spec schema, and keeps the deployment's rules for every service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers.tools import COMPOSE, DOCKER, OFFLINE, TLS, need, need_compose, run

pytestmark = pytest.mark.container

# (overlay files, profiles): every way the README brings the stack up.
CASES = {
    "cpu": ([COMPOSE], ["cpu"]),
    "gpu": ([COMPOSE], ["gpu"]),
    "cpu+monitoring": ([COMPOSE], ["cpu", "monitoring"]),
    "gpu+monitoring": ([COMPOSE], ["gpu", "monitoring"]),
    "tls": ([COMPOSE, TLS], ["cpu"]),
    "offline": ([COMPOSE, OFFLINE], ["cpu"]),
    "offline+monitoring": ([COMPOSE, OFFLINE], ["cpu", "monitoring"]),
}
RUNNERS = {"onnx", "jax", "tfserving", "torchserve"}


def compose_argv(files: list[Path], profiles: list[str]) -> list[str]:
    argv = need_compose()
    for f in files:
        argv += ["-f", str(f)]
    for p in profiles:
        argv += ["--profile", p]
    return argv


def resolved(files: list[Path], profiles: list[str]) -> dict[str, Any]:
    done = run([*compose_argv(files, profiles), "config", "--format", "json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", CASES)
def test_config_is_valid(case: str) -> None:
    done = run([*compose_argv(*CASES[case]), "config", "-q"])
    assert done.returncode == 0, done.stderr


class _TagLoader(yaml.SafeLoader):
    """YAML as data, with Compose's merge tags (!override, !reset) read as plain values."""


def _untag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_TagLoader.add_multi_constructor("!", _untag)


@pytest.mark.parametrize("path", sorted(DOCKER.glob("compose*.yaml")), ids=lambda p: p.name)
def test_compose_spec_schema(path: Path, tmp_path: Path) -> None:
    doc = yaml.load(path.read_text(), Loader=_TagLoader)
    as_json = tmp_path / f"{path.stem}.json"
    as_json.write_text(json.dumps(doc))
    done = run([need("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(as_json)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_can_fail(tmp_path: Path) -> None:
    """The schema check is no rubber stamp: an unknown service key is an error."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"services": {"x": {"image": "a:1", "restart_policy": "no"}}}))
    done = run([need("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert done.returncode != 0


@pytest.mark.parametrize("case", CASES)
def test_every_service_keeps_the_rules(case: str) -> None:
    """Healthcheck, restart policy, non-root user, bounded memory, signals handled (init),
    pinned image; a one-shot builder instead of a healthcheck."""
    services = resolved(*CASES[case])["services"]
    for name, svc in services.items():
        where = f"{case}: {name}"
        assert svc.get("restart") in {"unless-stopped", "on-failure:2"}, where
        assert svc.get("user") and not svc["user"].startswith(("0:", "root")), where
        assert svc["deploy"]["resources"]["limits"]["memory"], where
        assert svc.get("init") is True, where
        image = svc["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), where
        if name == "models":
            assert svc.get("network_mode") == "none", where
            continue
        assert svc["healthcheck"]["test"][0] == "CMD", where


@pytest.mark.parametrize("case", CASES)
def test_startup_order_waits_for_health(case: str) -> None:
    services = resolved(*CASES[case])["services"]
    gateway = services["gateway"]["depends_on"]
    assert gateway["models"]["condition"] == "service_completed_successfully"
    present = [r for r in gateway if r in services and r != "models"]
    assert {r.removesuffix("-gpu") for r in present} == RUNNERS, case
    assert all(gateway[r]["condition"] == "service_healthy" for r in present)
    for runner in present:
        assert services[runner]["depends_on"]["models"]["condition"] == (
            "service_completed_successfully"
        )


@pytest.mark.parametrize("case", CASES)
def test_only_the_gateway_publishes_on_loopback(case: str) -> None:
    services = resolved(*CASES[case])["services"]
    published = {n for n, s in services.items() if s.get("ports")}
    assert published <= {"gateway", "grafana"}, published
    assert "gateway" in published
    for name in published:
        assert {p["host_ip"] for p in services[name]["ports"]} == {"127.0.0.1"}, name
    for runner in (n for n in services if n.removesuffix("-gpu") in RUNNERS):
        assert list(services[runner]["networks"]) == ["runners"], runner


def test_runner_network_is_internal() -> None:
    assert resolved([COMPOSE], ["cpu"])["networks"]["runners"]["internal"] is True


def test_gpu_runners_reserve_a_gpu_under_their_cpu_names() -> None:
    services = resolved([COMPOSE], ["gpu"])["services"]
    runners = {n for n in services if n.endswith("-gpu")}
    assert {n.removesuffix("-gpu") for n in runners} == RUNNERS
    for name in runners:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
        assert services[name]["networks"]["runners"]["aliases"] == [name.removesuffix("-gpu")]
    assert not any("reservations" in s["deploy"]["resources"] for s in
                   resolved([COMPOSE], ["cpu"])["services"].values())  # fmt: skip


def test_keys_and_certificates_are_secrets() -> None:
    gateway = resolved([COMPOSE, TLS], ["cpu"])["services"]["gateway"]
    env = gateway["environment"]
    mounted = {s["source"]: s["target"] for s in gateway["secrets"]}
    assert env["SERVEGATE_API_KEYS_FILE"] == mounted["api_keys"]
    assert env["SERVEGATE_TLS_CERTFILE"] == mounted["tls_cert"]
    assert env["SERVEGATE_TLS_KEYFILE"] == mounted["tls_key"]


def test_default_profile_is_cpu() -> None:
    """docker/.env makes `docker compose up` (no --profile) the CPU stack."""
    done = run([*compose_argv([COMPOSE], []), "config", "--services"])
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"models", "gateway", *RUNNERS}
