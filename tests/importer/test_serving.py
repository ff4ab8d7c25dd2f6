"""The imported models served by the real runners behind a gateway: every variant answers
over HTTP and gRPC with the source framework's outputs (samples.npz)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.config import Repository
from tests.importer.conftest import MODELS
from tests.live import RunningGateway, infer, samples

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", MODELS)
def test_every_variant_answers_like_the_source(
    name: str, protocol: str, served: RunningGateway, imported_repository: Repository
) -> None:
    model = imported_repository[name]
    arrays = samples(imported_repository, name)
    inputs = {s.name: arrays[f"input.{s.name}"] for s in model.signature.inputs}
    for variant in model.variants:
        response = infer(served, protocol, f"{name}@{variant}", inputs)
        assert response.parameters.get("variant") == variant
        got = {t.name: t.data for t in response.outputs}
        for spec in model.signature.outputs:
            expected = arrays[f"output.{spec.name}"]
            assert got[spec.name].shape == expected.shape
            np.testing.assert_allclose(
                got[spec.name], expected, rtol=1e-4, atol=1e-5, err_msg=f"{name}@{variant}"
            )
