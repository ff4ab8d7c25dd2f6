"""Bad input and a missing runner: each gets its status and message, and loses nothing.

Every case is sent over HTTP and gRPC to the real gateway over the real ONNX runner,
and is followed by a good request that must still succeed.
"""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import orjson
import pytest

from gateway import client
from gateway.config import Repository
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from tests.live import LiveRunners, RunningGateway, start_gateway

pytestmark = pytest.mark.reliability

GOOD_X = np.ones((1, 64), np.float32)


def _good_http(gw: RunningGateway) -> None:
    with httpx.Client(base_url=gw.http_url) as http:
        out = client.infer_http(http, "digits", {"pixels": GOOD_X}, binary=False)
    assert out.outputs[0].shape == (1, 10)


def _good_grpc(gw: RunningGateway) -> None:
    with grpc.insecure_channel(gw.grpc_address) as channel:
        out = client.infer_grpc(channel, "digits", {"pixels": GOOD_X})
    assert out.outputs[0].shape == (1, 10)


def _inp(**over: object) -> dict[str, object]:
    return {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64} | over


HTTP_CASES = [
    ("/v2/models/digits/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
    ("/v2/models/digits/infer", orjson.dumps({"inputs": [_inp(name="pix")]}), {}, 400,
     "unknown input 'pix'"),
    ("/v2/models/digits/infer",
     orjson.dumps({"inputs": [_inp(datatype="INT32", data=[0] * 64)]}), {}, 400,
     "datatype INT32, the model expects FP32"),
    ("/v2/models/digits/infer", orjson.dumps({"inputs": [_inp(shape=[1, 63], data=[0] * 63)]}),
     {}, 400, "does not match the model's [-1, 64]"),
    ("/v2/models/digits/infer", orjson.dumps({"inputs": [_inp(data=[0.0] * 63)]}), {}, 400,
     "63 elements in data for shape [1, 64]"),
    ("/v2/models/digits/infer",
     orjson.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                              "parameters": {"binary_data_size": 256}}]}) + b"\0" * 100,
     {"Inference-Header-Content-Length": "SET"}, 400, "runs past the end of the body"),
    ("/v2/models/digits/infer", orjson.dumps({"inputs": [_inp()]}),
     {"Inference-Header-Content-Length": "abc"}, 400, "must be a non-negative integer"),
    ("/v2/models/digits/infer", b"\0" * 12, {"Inference-Header-Content-Length": "0"}, 400,
     "12 bytes is not a whole number of [-1, 64] FP32 rows"),
    ("/v2/models/nope/infer", orjson.dumps({"inputs": [_inp()]}), {}, 404, "unknown model 'nope'"),
    ("/v2/models/digits/versions/7/infer", orjson.dumps({"inputs": [_inp()]}), {}, 404,
     "has no version '7'"),
    ("/v2/models/digits@caffe/infer", orjson.dumps({"inputs": [_inp()]}), {}, 404,
     "has no variant 'caffe'"),
    ("/v2/models/digits/infer", b"not gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), HTTP_CASES)
def test_http_errors(
    onnx_gateway: RunningGateway,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    if headers.get("Inference-Header-Content-Length") == "SET":
        headers = {"Inference-Header-Content-Length": str(body.index(b"\0"))}
    reply = httpx.post(onnx_gateway.http_url + path, content=body, headers=headers)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    assert message in reply.json()["error"]
    _good_http(onnx_gateway)


def test_http_raw_binary_request_is_served(onnx_gateway: RunningGateway) -> None:
    reply = httpx.post(
        onnx_gateway.http_url + "/v2/models/digits/infer", content=GOOD_X.tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )  # fmt: skip
    assert reply.status_code == 200
    length = int(reply.headers["inference-header-content-length"])
    assert len(reply.content) - length == 40  # ten FP32 logits, binary


def test_http_gzip_body_is_accepted(onnx_gateway: RunningGateway) -> None:
    body = gzip.compress(orjson.dumps({"inputs": [_inp()]}))
    reply = httpx.post(
        onnx_gateway.http_url + "/v2/models/digits/infer", content=body,
        headers={"Content-Encoding": "gzip"},
    )  # fmt: skip
    assert reply.status_code == 200
    assert reply.json()["outputs"][0]["shape"] == [1, 10]


def _grpc_request(**over: object) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=str(over.get("model", "digits")))
    msg.model_version = str(over.get("version", ""))
    shape = over.get("shape", [1, 64])
    msg.inputs.add(
        name=over.get("name", "pixels"), datatype=over.get("datatype", "FP32"), shape=shape
    )
    msg.raw_input_contents.append(over.get("raw", b"\0" * 256))  # type: ignore[arg-type]
    return msg


GRPC_CASES = [
    (_grpc_request(name="pix"), grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'pix'"),
    (_grpc_request(datatype="INT32"), grpc.StatusCode.INVALID_ARGUMENT, "the model expects FP32"),
    (_grpc_request(shape=[1, 63], raw=b"\0" * 252), grpc.StatusCode.INVALID_ARGUMENT,
     "does not match the model's"),
    (_grpc_request(raw=b"\0" * 255), grpc.StatusCode.INVALID_ARGUMENT, "expected 256 bytes"),
    (_grpc_request(model="nope"), grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
    (_grpc_request(version="9"), grpc.StatusCode.NOT_FOUND, "has no version '9'"),
    (_grpc_request(model="digits@caffe"), grpc.StatusCode.NOT_FOUND, "has no variant 'caffe'"),
]  # fmt: skip


@pytest.mark.parametrize(("msg", "code", "message"), GRPC_CASES)
def test_grpc_errors(
    onnx_gateway: RunningGateway, msg: pb.ModelInferRequest, code: grpc.StatusCode, message: str
) -> None:
    with (
        grpc.insecure_channel(onnx_gateway.grpc_address) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        V2Stub(channel).ModelInfer(msg, timeout=10)  # type: ignore[arg-type]
    assert info.value.code() == code  # type: ignore[attr-defined]
    assert message in info.value.details()  # type: ignore[attr-defined]
    _good_grpc(onnx_gateway)


@pytest.fixture(scope="module")
def small_gateway(repository: Repository, runners: LiveRunners) -> Iterator[RunningGateway]:
    """A gateway with a 4 KiB body limit over the real ONNX runner."""
    gw = start_gateway(repository, {"onnx": runners.hop("onnx")}, max_body_bytes=4096)
    yield gw
    gw.stop()


def test_body_over_the_limit_is_413(small_gateway: RunningGateway) -> None:
    big = orjson.dumps({"inputs": [_inp(shape=[100, 64], data=[0.5] * 6400)]})
    reply = httpx.post(small_gateway.http_url + "/v2/models/digits/infer", content=big)
    assert reply.status_code == 413
    assert "exceeds the limit of 4096" in reply.json()["error"]
    gz = gzip.compress(big)
    assert len(gz) < 4096
    reply = httpx.post(
        small_gateway.http_url + "/v2/models/digits/infer", content=gz,
        headers={"Content-Encoding": "gzip"},
    )  # fmt: skip
    assert reply.status_code == 413
    _good_http(small_gateway)


def test_grpc_message_over_the_limit_is_resource_exhausted(small_gateway: RunningGateway) -> None:
    with (
        grpc.insecure_channel(small_gateway.grpc_address) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        V2Stub(channel).ModelInfer(  # type: ignore[arg-type]
            _grpc_request(shape=[100, 64], raw=b"\0" * 25600), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    _good_grpc(small_gateway)


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """An address that refuses connections: bound, never listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_unreachable_runner_is_503_and_unavailable(
    repository: Repository, dead_endpoint: str
) -> None:
    gw = start_gateway(repository, {"onnx": dead_endpoint})
    try:
        reply = httpx.post(
            gw.http_url + "/v2/models/digits/infer", content=orjson.dumps({"inputs": [_inp()]})
        )
        assert reply.status_code == 503
        assert "variant 'digits@onnx'" in reply.json()["error"]
        assert httpx.get(gw.http_url + "/v2/health/ready").status_code == 503
        assert httpx.get(gw.http_url + "/v2/health/live").status_code == 200
        assert httpx.get(gw.http_url + "/v2/models/digits/ready").status_code == 503
        with (
            grpc.insecure_channel(gw.grpc_address) as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            V2Stub(channel).ModelInfer(_grpc_request(), timeout=10)  # type: ignore[arg-type]
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        gw.stop()
