"""Shared fixtures: the built example repository, a tiny one, real runners and gateways.

Runners and gateways are session-scoped: started once, always stopped and reaped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.config import DEFAULT_REPOSITORY, Repository, load_repository
from gateway.supervisor import needed_runners
from tests.live import LiveRunners, RunningGateway, samples, start_gateway

TINY_MODEL = """
versions: [1]
signature:
  inputs:
    - {name: x, datatype: FP32, shape: [-1, 4]}
    - {name: tag, datatype: BYTES, shape: [-1]}
  outputs:
    - {name: y, datatype: FP32, shape: [-1, 4]}
routing: {default: a}
variants:
  a: {runner: onnx, artifact: model.onnx}
  b: {runner: jax, artifact: model.jax}
"""


@pytest.fixture(scope="session")
def repository() -> Repository:
    """The example model repository with every artifact built (builds what is missing once)."""
    subprocess.run(
        [sys.executable, "-m", "model_repo.builders", "--repository", str(DEFAULT_REPOSITORY)],
        check=True,
    )
    return load_repository(DEFAULT_REPOSITORY)


@pytest.fixture(scope="session")
def digits(repository: Repository) -> dict[str, np.ndarray]:
    """The digits model's samples.npz: inputs, reference logits, labels."""
    return samples(repository, "digits")


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Repository:
    """A one-model repository (`tiny`: two inputs, one output, variants a and b)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "model.yaml").write_text(TINY_MODEL)
    return load_repository(tmp_path)


@pytest.fixture(scope="session")
def runners(
    repository: Repository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveRunners]:
    """`runners(kind)` starts that runner once per session and returns its gRPC host:port;
    `runners.hop(kind)` is the endpoint a gateway forwards to (the framed socket)."""
    live = LiveRunners(repository, lambda kind: tmp_path_factory.mktemp(f"runner-{kind}"))
    yield live
    live.stop()


@pytest.fixture(scope="session")
def gateway_over(
    repository: Repository, runners: LiveRunners
) -> Iterator[Callable[[str], RunningGateway]]:
    """`gateway_over(kind)`: a gateway whose only runner is `runners(kind)`, once per session."""
    gateways: dict[str, RunningGateway] = {}

    def start(kind: str) -> RunningGateway:
        if kind not in gateways:
            hop = runners.hop(kind)
            gateways[kind] = start_gateway(repository, {kind: hop}, key_files=runners.key_files())
        return gateways[kind]

    yield start
    for gw in gateways.values():
        gw.stop()


@pytest.fixture(scope="session")
def onnx_gateway(gateway_over: Callable[[str], RunningGateway]) -> RunningGateway:
    """A gateway in front of the ONNX Runtime runner only."""
    return gateway_over("onnx")


@pytest.fixture(scope="session")
def full_gateway(repository: Repository, runners: LiveRunners) -> Iterator[RunningGateway]:
    """A gateway in front of every runner the repository needs (all four frameworks)."""
    hops = {kind: runners.hop(kind) for kind in needed_runners(repository)}
    gw = start_gateway(repository, hops, key_files=runners.key_files())
    yield gw
    gw.stop()
