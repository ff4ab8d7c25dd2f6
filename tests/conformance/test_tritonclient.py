"""tritonclient, a client we did not write, against the gateway: HTTP and gRPC."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.client import make_request
from gateway.config import Repository
from gateway.protocol import v2_grpc
from gateway.protocol.v2_service import V2Stub
from tests.live import RunningGateway, samples

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def sample(repository: Repository) -> tuple[np.ndarray, np.ndarray]:
    ref = samples(repository, "digits")
    return ref["inputs"][:5], ref["logits"][:5]


@pytest.fixture(params=["http", "grpc"])
def triton(
    request: pytest.FixtureRequest, onnx_gateway: RunningGateway
) -> Iterator[tuple[Any, Any]]:
    if request.param == "http":
        c = thttp.InferenceServerClient(onnx_gateway.http_url.removeprefix("http://"))
        yield c, thttp
    else:
        c = tgrpc.InferenceServerClient(onnx_gateway.grpc_address)
        yield c, tgrpc
    c.close()


def _meta(obj: Any) -> dict[str, Any]:
    """tritonclient HTTP returns dicts, gRPC protobufs (as_json gives dicts there)."""
    if isinstance(obj, dict):
        return obj
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(obj, preserving_proto_field_name=True)


def test_health(triton: tuple[Any, Any]) -> None:
    c, _ = triton
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("digits")
    assert c.is_model_ready("digits", "1")
    assert c.is_model_ready("digits@onnx")


def test_server_metadata(triton: tuple[Any, Any]) -> None:
    c, _ = triton
    meta = _meta(c.get_server_metadata())
    assert meta["name"] == "servegate"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata(triton: tuple[Any, Any]) -> None:
    c, _ = triton
    meta = _meta(c.get_model_metadata("digits"))
    assert meta["name"] == "digits"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnx_onnxv1"
    (inp,) = meta["inputs"]
    assert (inp["name"], inp["datatype"], [int(d) for d in inp["shape"]]) == (
        "pixels",
        "FP32",
        [-1, 64],
    )
    (out,) = meta["outputs"]
    assert (out["name"], [int(d) for d in out["shape"]]) == ("logits", [-1, 10])


@pytest.mark.parametrize("binary", [True, False])
def test_infer(
    triton: tuple[Any, Any], sample: tuple[np.ndarray, np.ndarray], binary: bool
) -> None:
    c, mod = triton
    x, logits = sample
    inp = mod.InferInput("pixels", list(x.shape), "FP32")
    if mod is thttp:
        inp.set_data_from_numpy(x, binary_data=binary)
        out = mod.InferRequestedOutput("logits", binary_data=binary)
    else:
        inp.set_data_from_numpy(x)
        out = mod.InferRequestedOutput("logits")
    result = c.infer("digits", [inp], outputs=[out], request_id="req-7", model_version="1")
    got = result.as_numpy("logits")
    assert got.shape == (5, 10)
    np.testing.assert_allclose(got, logits, atol=1e-4)
    assert result.get_response(**({"as_json": True} if mod is tgrpc else {}))["id"] == "req-7"


def test_infer_without_requested_outputs(
    triton: tuple[Any, Any], sample: tuple[np.ndarray, np.ndarray]
) -> None:
    """tritonclient HTTP then asks for binary_data_output on the request: it must be honoured."""
    c, mod = triton
    x, logits = sample
    inp = mod.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    got = c.infer("digits", [inp]).as_numpy("logits")
    np.testing.assert_allclose(got, logits, atol=1e-4)


def test_errors_surface_as_exceptions(
    triton: tuple[Any, Any], sample: tuple[np.ndarray, np.ndarray]
) -> None:
    c, mod = triton
    x, _ = sample
    inp = mod.InferInput("pixels", [5, 63], "FP32")
    inp.set_data_from_numpy(x[:, :63].copy())
    with pytest.raises(Exception, match="does not match the model's"):
        c.infer("digits", [inp])
    with pytest.raises(Exception, match="unknown model 'nope'"):
        c.get_model_metadata("nope")


def test_grpc_stream_infer_answers_each_request_in_order(
    onnx_gateway: RunningGateway, digits: dict[str, np.ndarray]
) -> None:
    """Triton's ModelStreamInfer, through tritonclient's own streaming API."""
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    c = tgrpc.InferenceServerClient(onnx_gateway.grpc_address)
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i in range(5):
        inp = tgrpc.InferInput("pixels", [1, 64], "FP32")
        inp.set_data_from_numpy(digits["inputs"][i : i + 1])
        c.async_stream_infer("digits", [inp], request_id=str(i))
    bad = tgrpc.InferInput("pixels", [1, 63], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 63), np.float32))
    c.async_stream_infer("digits", [bad], request_id="bad")
    got = [answers.get(timeout=30) for _ in range(6)]
    c.stop_stream()
    c.close()
    for i, (result, error) in enumerate(got[:5]):
        assert error is None
        assert result.get_response().id == str(i)  # type: ignore[attr-defined]
        np.testing.assert_allclose(
            result.as_numpy("logits"), digits["logits"][i : i + 1], rtol=0, atol=1e-4  # type: ignore[attr-defined]
        )
    result, error = got[5]
    assert result is None and "does not match the model's" in str(error)


def test_classification_returns_the_top_classes(
    onnx_gateway: RunningGateway, digits: dict[str, np.ndarray]
) -> None:
    c = thttp.InferenceServerClient(onnx_gateway.http_url[7:])
    inp = thttp.InferInput("pixels", [2, 64], "FP32")
    inp.set_data_from_numpy(digits["inputs"][:2])
    out = thttp.InferRequestedOutput("logits", class_count=3)
    result = c.infer("digits", [inp], outputs=[out]).as_numpy("logits")
    assert result.shape == (2, 3)
    for row, logits in zip(result, digits["logits"][:2], strict=True):
        classes = [int(entry.decode().split(":")[1]) for entry in row]
        assert classes == list(np.argsort(-logits)[:3])
        assert float(row[0].decode().split(":")[0]) == pytest.approx(logits.max(), abs=1e-3)


def test_request_ids_are_echoed_and_answers_gzipped_on_request(
    onnx_gateway: RunningGateway, digits: dict[str, np.ndarray]
) -> None:
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                        "data": digits["inputs"][0].tolist()}], "id": "body-id"}  # fmt: skip
    reply = httpx.post(
        f"{onnx_gateway.http_url}/v2/models/digits/infer",
        json=body,
        headers={"x-request-id": "req-42", "accept-encoding": "gzip"},
    )
    assert reply.headers["x-request-id"] == "req-42" and reply.json()["id"] == "body-id"
    assert reply.headers.get("content-encoding") is None  # small answers go as they are
    meta = httpx.get(f"{onnx_gateway.http_url}/openapi.json", headers={"accept-encoding": "gzip"})
    assert meta.headers["content-encoding"] == "gzip" and meta.json()["openapi"]
    with grpc.insecure_channel(onnx_gateway.grpc_address) as channel:
        call = V2Stub(channel).ModelInfer.with_call(  # type: ignore[arg-type]
            v2_grpc.request_to_pb(make_request("digits", {"pixels": digits["inputs"][:1]})),
            metadata=(("x-request-id", "grpc-7"),),
            timeout=30,
        )
    assert ("x-request-id", "grpc-7") in call[1].initial_metadata()


def test_reflection_describes_the_v2_service_as_clients_know_it(
    onnx_gateway: RunningGateway,
) -> None:
    with grpc.insecure_channel(onnx_gateway.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        def ask(**kw: str) -> reflection_pb2.ServerReflectionResponse:
            request = reflection_pb2.ServerReflectionRequest(**kw)
            (answer,) = stub.ServerReflectionInfo(iter([request]))
            return answer

        services = {s.name for s in ask(list_services="").list_services_response.service}
        found = ask(file_containing_symbol="inference.GRPCInferenceService")
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
    (raw,) = found.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    methods = {m.name for m in file.service[0].method}
    assert file.package == "inference"
    assert {"ModelInfer", "ModelConfig", "ModelStreamInfer", "RepositoryIndex"} <= methods
