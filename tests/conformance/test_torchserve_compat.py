"""TorchServe's callers against the gateway over real runners (onnx and jax): REST as
TorchServe's inference API docs show it (`/predictions/{m}`, a JSON or raw body, `curl -T`'s
PUT, `/ping`) and gRPC `InferenceAPIsService` with stubs of our torchserve.proto (the same
package, service and field numbers as TorchServe 0.12's). Every answer must equal the v2
route's answer for the same input and variant."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import empty_pb2

from gateway.config import Repository
from gateway.protocol.pb import torchserve_pb2 as ts
from tests.conformance import compat_gateway
from tests.live import LiveRunners, samples

pytestmark = pytest.mark.conformance

VARIANTS = ("onnx", "jax")
SERVICE = "/org.pytorch.serve.grpc.inference.InferenceAPIsService"


@pytest.fixture(scope="module")
def gateway(repository: Repository, runners: LiveRunners) -> Iterator[compat_gateway.CompatGateway]:
    gw = compat_gateway.start(repository, {kind: runners.hop(kind) for kind in VARIANTS})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def pixels(repository: Repository) -> np.ndarray:
    return samples(repository, "digits")["inputs"][:3].astype(np.float32)


def v2_answer(gw: compat_gateway.CompatGateway, variant: str, x: np.ndarray) -> np.ndarray:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape),
                       "data": x.reshape(-1).tolist()}]}  # fmt: skip
    reply = httpx.post(f"{gw.http_url}/v2/models/digits@{variant}/infer", json=doc)
    assert reply.status_code == 200, reply.text
    (out,) = reply.json()["outputs"]
    return np.array(out["data"], np.float32).reshape(out["shape"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_rest_predictions_equal_v2(
    gateway: compat_gateway.CompatGateway, pixels: np.ndarray, variant: str
) -> None:
    url = f"{gateway.http_url}/predictions/digits"
    pin = {"servegate-variant": variant}
    for row in pixels:  # one instance per request, as TorchServe's callers send them
        want = v2_answer(gateway, variant, row[np.newaxis])
        reply = httpx.post(url, json={"data": row.tolist()}, headers=pin)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/json"
        np.testing.assert_array_equal(np.array(reply.json(), np.float32), want[0])
        # `curl -T row.bin URL`: a PUT of the raw bytes, answered in raw bytes
        reply = httpx.put(f"{url}@{variant}/1.0", content=row.tobytes())
        assert reply.status_code == 200, reply.text
        np.testing.assert_array_equal(np.frombuffer(reply.content, np.float32), want[0])
    want = v2_answer(gateway, variant, pixels)
    reply = httpx.post(f"{url}/1", json={"pixels": pixels.tolist()}, headers=pin)
    np.testing.assert_array_equal(np.array(reply.json(), np.float32), want)


def test_rest_ping_and_errors(gateway: compat_gateway.CompatGateway) -> None:
    reply = httpx.get(f"{gateway.http_url}/ping")
    assert (reply.status_code, reply.json()) == (200, {"status": "Healthy"})
    reply = httpx.post(f"{gateway.http_url}/predictions/nope", json={"data": [1.0]})
    assert reply.status_code == 404
    assert reply.json()["type"] == "ModelNotFoundException"
    reply = httpx.post(f"{gateway.http_url}/predictions/digits", json={"data": [1.0, 2.0]})
    assert reply.status_code == 400
    assert reply.json()["code"] == 400 and "pixels" in reply.json()["message"]


@pytest.fixture(scope="module")
def channel(gateway: compat_gateway.CompatGateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.grpc_address) as ch:
        yield ch


@pytest.mark.parametrize("variant", VARIANTS)
def test_grpc_predictions_equal_v2(
    gateway: compat_gateway.CompatGateway, channel: grpc.Channel, pixels: np.ndarray, variant: str
) -> None:
    predictions = channel.unary_unary(
        f"{SERVICE}/Predictions",
        request_serializer=ts.PredictionsRequest.SerializeToString,
        response_deserializer=ts.PredictionResponse.FromString,
    )
    for row in pixels:
        want = v2_answer(gateway, variant, row[np.newaxis])[0]
        # TorchServe's example client: input={"data": <the file's bytes>}
        reply = predictions(
            ts.PredictionsRequest(model_name=f"digits@{variant}", input={"data": row.tobytes()}),
            timeout=30,
        )
        np.testing.assert_array_equal(np.frombuffer(reply.prediction, np.float32), want)
        reply = predictions(
            ts.PredictionsRequest(
                model_name="digits",
                model_version="1",
                input={"data": json.dumps(row.tolist()).encode()},
            ),
            metadata=(("servegate-variant", variant),),
            timeout=30,
        )
        np.testing.assert_array_equal(np.array(json.loads(reply.prediction), np.float32), want)
    with pytest.raises(grpc.RpcError) as err:
        predictions(ts.PredictionsRequest(model_name="nope", input={"data": b"[]"}), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_grpc_ping(channel: grpc.Channel) -> None:
    ping = channel.unary_unary(
        f"{SERVICE}/Ping",
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=ts.TorchServeHealthResponse.FromString,
    )
    assert json.loads(ping(empty_pb2.Empty(), timeout=30).health) == {"status": "Healthy"}
