"""The ONNX Runtime runner behind the real gateway: every protocol gives onnxruntime's answer."""

from __future__ import annotations

import json

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from gateway import client
from gateway.config import Repository
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from tests.live import RunningGateway, infer, samples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def session(repository: Repository) -> ort.InferenceSession:
    return ort.InferenceSession(str(repository.version_folder("digits") / "model.onnx"))


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_outputs_equal_onnxruntime_run_directly(
    onnx_gateway: RunningGateway,
    session: ort.InferenceSession,
    digits: dict[str, np.ndarray],
    protocol: str,
) -> None:
    x = digits["inputs"][:7]
    (expected,) = session.run(None, {"pixels": x})
    got = infer(onnx_gateway, protocol, "digits", {"pixels": x}).outputs[0].data
    assert got.shape == (7, 10)
    # JSON carries float32 as decimal text that orjson writes exactly: all three are exact.
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_held_out_accuracy_equals_the_builders_figure(
    onnx_gateway: RunningGateway,
    repository: Repository,
    digits: dict[str, np.ndarray],
    protocol: str,
) -> None:
    record = json.loads((repository.version_folder("digits") / "build.json").read_text())
    x = digits["inputs"]
    chunks = [
        infer(onnx_gateway, protocol, "digits", {"pixels": x[i : i + 64]}).outputs[0].data
        for i in range(0, len(x), 64)
    ]
    predicted = np.concatenate(chunks).argmax(axis=1)
    accuracy = float((predicted == digits["labels"]).mean())
    assert len(predicted) == record["test_samples"] == 450
    assert accuracy == record["test_accuracy"]
    assert accuracy >= 0.95


def test_gateway_answer_equals_the_runners_own(
    onnx_gateway: RunningGateway, runners: object, digits: dict[str, np.ndarray]
) -> None:
    endpoint = runners("onnx")  # type: ignore[operator]
    x = digits["inputs"][:3]
    with grpc.insecure_channel(endpoint) as channel:
        direct = client.infer_grpc(channel, "digits", {"pixels": x}).outputs[0].data
    got = infer(onnx_gateway, "grpc", "digits", {"pixels": x}).outputs[0].data
    np.testing.assert_array_equal(got, direct)


def test_resnet18_through_the_gateway(onnx_gateway: RunningGateway, repository: Repository) -> None:
    ref = samples(repository, "resnet18")
    x, logits = ref["inputs"][:2], ref["logits"][:2]
    got = infer(onnx_gateway, "binary", "resnet18", {"image": x}).outputs[0].data
    assert got.shape == (2, 1000)
    np.testing.assert_allclose(got, logits, atol=1e-4)


def test_runner_metadata_maps_to_the_signature(runners: object, repository: Repository) -> None:
    with grpc.insecure_channel(runners("onnx")) as channel:  # type: ignore[operator]
        meta = V2Stub(channel).ModelMetadata(pb.ModelMetadataRequest(name="digits"), timeout=5)  # type: ignore[arg-type]
    sig = repository["digits"].signature
    assert meta.platform == "onnx_onnxv1"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        (s.name, s.datatype, list(s.shape)) for s in sig.inputs
    ]
    assert [t.name for t in meta.outputs] == ["logits"]
