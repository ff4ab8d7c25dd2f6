"""Parity: every variant of a model computes the reference function, over HTTP and gRPC.

Reference: the float64 numpy forward pass of the shared weights (samples.npz). Stated
tolerances, absolute on the logits: digits 1e-4 (FP32 MLP); resnet18 1e-3 (FP32, 20
conv layers summed in different orders by each framework, logits of magnitude ~1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.config import Repository
from tests.live import RunningGateway, infer, samples

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = {"digits": 1e-4, "resnet18": 1e-3}
PROTOCOLS = ("binary", "grpc")


def _cases(repository: Repository) -> list[tuple[str, str]]:
    return [(m, v) for m in ("digits", "resnet18") for v in repository[m].variants]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model_variant" in metafunc.fixturenames:
        from gateway.config import DEFAULT_REPOSITORY, load_repository

        repo = load_repository(DEFAULT_REPOSITORY)
        metafunc.parametrize("model_variant", _cases(repo), ids=lambda c: f"{c[0]}@{c[1]}")


@pytest.mark.parametrize("protocol", [*PROTOCOLS, "http"])
def test_variant_matches_the_reference(
    full_gateway: RunningGateway,
    repository: Repository,
    model_variant: tuple[str, str],
    protocol: str,
) -> None:
    model, variant = model_variant
    spec = repository[model].signature.inputs[0]
    ref = samples(repository, model)
    count = 16 if model == "digits" else 2
    x, reference = ref["inputs"][:count], ref["logits"][:count]
    got = infer(full_gateway, protocol, f"{model}@{variant}", {spec.name: x}).outputs[0].data
    assert got.shape == reference.shape
    diff = float(np.abs(got - reference).max())
    assert diff <= TOLERANCE[model], f"{model}@{variant} over {protocol}: max |diff| {diff}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_digits_accuracy_is_identical_through_every_variant(
    full_gateway: RunningGateway, repository: Repository, protocol: str
) -> None:
    record = json.loads((repository.version_folder("digits") / "build.json").read_text())
    ref = samples(repository, "digits")
    x, labels = ref["inputs"], ref["labels"]
    predictions = {}
    for variant in repository["digits"].variants:
        model = f"digits@{variant}"
        chunks = [
            infer(full_gateway, protocol, model, {"pixels": x[i : i + 64]}).outputs[0].data
            for i in range(0, len(x), 64)
        ]
        predictions[variant] = np.concatenate(chunks).argmax(axis=1)
        assert float((predictions[variant] == labels).mean()) == record["test_accuracy"]
    first = next(iter(predictions.values()))
    for variant, predicted in predictions.items():
        np.testing.assert_array_equal(predicted, first, err_msg=variant)
