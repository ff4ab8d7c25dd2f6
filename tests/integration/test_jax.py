"""The JAX runner behind the real gateway: `<model>@jax` answers with the reference logits.

The runner is started by the Supervisor (kind "jax"), the gateway in-process on port 0
with no other runner behind it, so an answer can only have come from JAX. Tolerances:
digits 1e-4 absolute (FP32 against the float64 reference; about 3e-6 seen), resnet18
5e-4 absolute (its logits reach about 5; about 3e-6 seen on CPU; the export asks for
HIGHEST precision so that GPUs do not fall back to TF32).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import httpx
import numpy as np
import pytest

from gateway import client
from gateway.config import Repository
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from tests.live import RunningGateway, infer, logits, samples

pytestmark = pytest.mark.integration

DIGITS_ATOL = 1e-4
RESNET_ATOL = 5e-4


@pytest.fixture(scope="module")
def jax_runner(runners: Callable[[str], str]) -> str:
    return runners("jax")


@pytest.fixture(scope="module")
def jax_gateway(gateway_over: Callable[[str], RunningGateway]) -> RunningGateway:
    """A gateway whose only runner is the JAX one."""
    return gateway_over("jax")


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_digits_equal_the_reference_logits(
    jax_gateway: RunningGateway, digits: dict[str, np.ndarray], protocol: str
) -> None:
    response = infer(jax_gateway, protocol, "digits@jax", {"pixels": digits["inputs"]})
    assert response.parameters.get("variant") == "jax"
    got = logits(response)
    assert got.shape == digits["logits"].shape == (450, 10)
    np.testing.assert_allclose(got, digits["logits"], rtol=0, atol=DIGITS_ATOL)


@pytest.mark.parametrize("protocol", ["binary", "grpc"])
def test_resnet18_equals_the_reference_logits(
    jax_gateway: RunningGateway, repository: Repository, protocol: str
) -> None:
    ref = samples(repository, "resnet18")
    got = logits(infer(jax_gateway, protocol, "resnet18@jax", {"image": ref["inputs"]}))
    assert got.shape == (8, 1000)
    np.testing.assert_allclose(got, ref["logits"], rtol=0, atol=RESNET_ATOL)
    np.testing.assert_array_equal(got.argmax(axis=1), ref["labels"])


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_held_out_accuracy_equals_the_builders_figure(
    jax_gateway: RunningGateway,
    repository: Repository,
    digits: dict[str, np.ndarray],
    protocol: str,
) -> None:
    record = json.loads((repository.version_folder("digits") / "build.json").read_text())
    x = digits["inputs"]
    # 50 rows a request: never a bucket size, so every request is padded and sliced back.
    chunks = [
        logits(infer(jax_gateway, protocol, "digits@jax", {"pixels": x[i : i + 50]}))
        for i in range(0, len(x), 50)
    ]
    predicted = np.concatenate(chunks).argmax(axis=1)
    assert len(predicted) == record["test_samples"] == 450
    assert float((predicted == digits["labels"]).mean()) == record["test_accuracy"]


@pytest.mark.parametrize("rows", [1, 3, 5, 17, 63, 65, 130])
def test_odd_batch_sizes_come_back_row_for_row(
    jax_gateway: RunningGateway, digits: dict[str, np.ndarray], rows: int
) -> None:
    # Rows in a shuffled order: each answer must be its own row's, in the order sent.
    pick = np.random.default_rng(rows).permutation(len(digits["inputs"]))[:rows]
    got = logits(infer(jax_gateway, "grpc", "digits@jax", {"pixels": digits["inputs"][pick]}))
    assert got.shape == (rows, 10)
    np.testing.assert_allclose(got, digits["logits"][pick], rtol=0, atol=DIGITS_ATOL)


def test_gateway_answer_equals_the_runners_own(
    jax_gateway: RunningGateway, jax_runner: str, digits: dict[str, np.ndarray]
) -> None:
    x = digits["inputs"][:5]
    with grpc.insecure_channel(jax_runner) as channel:
        direct = logits(client.infer_grpc(channel, "digits", {"pixels": x}))
    got = logits(infer(jax_gateway, "grpc", "digits@jax", {"pixels": x}))
    np.testing.assert_array_equal(got, direct)


def test_gateway_lists_the_jax_variant_ready(jax_gateway: RunningGateway) -> None:
    with httpx.Client(base_url=jax_gateway.http_url) as http:
        meta = http.get("/v2/models/digits@jax").json()
    assert meta["platform"] == "jax_export"
    states = {v["name"]: v["state"] for v in meta["variants"]}
    assert states["jax"] == "READY"


@pytest.mark.parametrize("model", ["digits", "resnet18"])
def test_runner_metadata_matches_the_signature(
    jax_runner: str, repository: Repository, model: str
) -> None:
    with grpc.insecure_channel(jax_runner) as channel:
        stub = V2Stub(channel)  # type: ignore[arg-type]
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=5)
        ready = stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=5)
    sig = repository[model].signature
    assert ready.ready
    assert meta.name == model and list(meta.versions) == list(repository[model].versions)
    assert meta.platform == "jax_export"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        (s.name, s.datatype, list(s.shape)) for s in sig.inputs
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        (s.name, s.datatype, list(s.shape)) for s in sig.outputs
    ]


def test_runner_refuses_a_wrong_inner_dimension(jax_runner: str) -> None:
    with grpc.insecure_channel(jax_runner) as channel, pytest.raises(client.ClientError) as exc:
        client.infer_grpc(channel, "digits", {"pixels": np.zeros((2, 63), np.float32)})
    assert exc.value.status == "INVALID_ARGUMENT"
