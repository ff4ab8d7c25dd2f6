"""TF Serving's and TorchServe's gRPC services on a real grpc.aio server (127.0.0.1:0), beside
the v2 servicer, over FunctionBackends: codes, pins, deadlines, typed replies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from google.protobuf import empty_pb2

from gateway.api.compat_grpc import TORCHSERVE_SERVICE, handlers
from gateway.api.grpc import servicer
from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.protocol.pb import tfserving_pb2 as tfs
from gateway.protocol.pb import torchserve_pb2 as ts
from gateway.protocol.tfserving_service import TFServingStub, unpack_signature_defs
from gateway.protocol.tfserving_tensors import tensor_to_pb
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.doubles import FunctionBackend


def echo(variant: str) -> object:
    def answer(request: InferRequest) -> InferResponse:
        x = next(t for t in request.inputs if t.name == "x")
        mark = np.full_like(x.data, ord(variant))
        return InferResponse(request.model_name, (Tensor("y", "FP32", x.data + mark),))

    return answer


@pytest.fixture
def backends() -> dict[tuple[str, str], FunctionBackend]:
    return {
        ("tiny", "a"): FunctionBackend("tiny@a", echo("a")),  # type: ignore[arg-type]
        ("tiny", "b"): FunctionBackend("tiny@b", echo("b")),  # type: ignore[arg-type]
    }


@dataclass
class Stubs:
    tfs: TFServingStub
    channel: grpc.aio.Channel

    async def predictions(self, msg: ts.PredictionsRequest, **kw: object) -> ts.PredictionResponse:
        call = self.channel.unary_unary(
            f"/{TORCHSERVE_SERVICE}/Predictions",
            request_serializer=ts.PredictionsRequest.SerializeToString,
            response_deserializer=ts.PredictionResponse.FromString,
        )
        return await call(msg, timeout=5, **kw)  # type: ignore[no-any-return]

    async def ping(self) -> ts.TorchServeHealthResponse:
        call = self.channel.unary_unary(
            f"/{TORCHSERVE_SERVICE}/Ping",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=ts.TorchServeHealthResponse.FromString,
        )
        return await call(empty_pb2.Empty(), timeout=5)  # type: ignore[no-any-return]


@pytest.fixture
async def stubs(
    tiny_repo: Repository, backends: dict[tuple[str, str], FunctionBackend]
) -> AsyncIterator[Stubs]:
    plane = DataPlane(tiny_repo, backends)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((servicer(plane), *handlers(plane)))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Stubs(TFServingStub(channel), channel)
    await server.stop(0)


def predict_request(name: str = "tiny", **spec: object) -> tfs.PredictRequest:
    msg = tfs.PredictRequest(model_spec=tfs.ModelSpec(name=name, **spec))  # type: ignore[arg-type]
    x = Tensor("x", "FP32", np.arange(8, dtype=np.float32).reshape(2, 4))
    msg.inputs["x"].CopyFrom(tensor_to_pb(x, typed=False))
    msg.inputs["tag"].string_val.extend([b"p", b"q"])
    msg.inputs["tag"].dtype = tfs.DT_STRING
    msg.inputs["tag"].tensor_shape.dim.add(size=2)
    return msg


async def test_predict_answers_typed_fields_with_the_version(stubs: Stubs) -> None:
    reply = await stubs.tfs.Predict(predict_request(), timeout=5)
    assert reply.model_spec.name == "tiny" and reply.model_spec.version.value == 1
    assert list(reply.outputs["y"].float_val) == [v + ord("a") for v in range(8)]
    assert [d.size for d in reply.outputs["y"].tensor_shape.dim] == [2, 4]


@pytest.mark.parametrize("how", ["label", "metadata", "alias"])
async def test_predict_pins_a_variant(stubs: Stubs, how: str) -> None:
    msg = predict_request("tiny@b" if how == "alias" else "tiny")
    if how == "label":
        msg.model_spec.version_label = "b"
    metadata = (("servegate-variant", "b"),) if how == "metadata" else None
    reply = await stubs.tfs.Predict(msg, metadata=metadata, timeout=5)
    assert reply.outputs["y"].float_val[0] == ord("b")


async def test_the_callers_deadline_reaches_the_backend(
    stubs: Stubs, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    before = time.monotonic()
    await stubs.tfs.Predict(predict_request(), timeout=2.0)
    after = time.monotonic()
    ((_, deadline),) = backends[("tiny", "a")].calls
    assert before + 1.9 <= deadline <= after + 2.1


def _with(msg: tfs.PredictRequest, **change: object) -> tfs.PredictRequest:
    for key, value in change.items():
        if key == "output_filter":
            msg.output_filter.append(value)  # type: ignore[arg-type]
        elif key == "version":
            msg.model_spec.version.value = value  # type: ignore[assignment]
        else:
            setattr(msg.model_spec, key, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "code", "words"),
    [
        (predict_request("nope"), grpc.StatusCode.NOT_FOUND, "unknown model"),
        (_with(predict_request(), version=7), grpc.StatusCode.NOT_FOUND, "no version '7'"),
        (_with(predict_request(), version_label="c"), grpc.StatusCode.NOT_FOUND, "variant 'c'"),
        (_with(predict_request(), signature_name="s"), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "s" not found.'),
        (_with(predict_request(), output_filter="z"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown output 'z'"),
        (tfs.PredictRequest(model_spec=tfs.ModelSpec(name="tiny")),
         grpc.StatusCode.INVALID_ARGUMENT, "no inputs"),
    ],
)  # fmt: skip
async def test_predict_errors_are_tf_servings_codes(
    stubs: Stubs, msg: tfs.PredictRequest, code: grpc.StatusCode, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.tfs.Predict(msg, timeout=5)
    assert err.value.code() == code
    assert words in (err.value.details() or "")


async def test_undecodable_messages_and_backend_failures(
    stubs: Stubs, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    raw = stubs.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(b"\xff\xff\xff", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def broken(_: InferRequest) -> InferResponse:
        raise RuntimeError("/secret/path")

    backends[("tiny", "a")].handler = broken
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.tfs.Predict(predict_request(), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (err.value.details() or "") and "error id" in (err.value.details() or "")


async def test_metadata_and_status(
    stubs: Stubs, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    req = tfs.GetModelMetadataRequest(
        model_spec=tfs.ModelSpec(name="tiny"), metadata_field=["signature_def"]
    )
    reply = await stubs.tfs.GetModelMetadata(req, timeout=5)
    assert reply.model_spec.version.value == 1
    sig = unpack_signature_defs(reply).signature_def["serving_default"]
    assert sorted(sig.inputs) == ["tag", "x"] and sig.inputs["tag"].dtype == tfs.DT_STRING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.tfs.GetModelMetadata(
            tfs.GetModelMetadataRequest(model_spec=tfs.ModelSpec(name="tiny")), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    backends[("tiny", "b")].is_ready = False
    status = tfs.GetModelStatusRequest(model_spec=tfs.ModelSpec(name="tiny"))
    (a,) = (await stubs.tfs.GetModelStatus(status, timeout=5)).model_version_status
    assert (a.version, a.state) == (1, tfs.ModelVersionStatus.AVAILABLE)
    status.model_spec.version_label = "b"
    (b,) = (await stubs.tfs.GetModelStatus(status, timeout=5)).model_version_status
    assert b.state == tfs.ModelVersionStatus.UNKNOWN and b.status.error_code == tfs.UNAVAILABLE


async def test_torchserve_predictions_and_ping(stubs: Stubs) -> None:
    msg = ts.PredictionsRequest(
        model_name="tiny", model_version="1.0", input={"data": b'{"x": [1, 2, 3, 4], "tag": "t"}'}
    )
    reply = await stubs.predictions(msg)
    assert reply.prediction == b"[98.0,99.0,100.0,101.0]"
    msg = ts.PredictionsRequest(
        model_name="tiny",
        input={"x": np.zeros((1, 4), np.float32).tobytes(), "tag": b"raw"},
    )
    reply = await stubs.predictions(msg, metadata=(("servegate-variant", "b"),))
    assert np.frombuffer(reply.prediction, np.float32).tolist() == [98.0] * 4
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.predictions(ts.PredictionsRequest(model_name="tiny", input={"z": b"[]"}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.predictions(ts.PredictionsRequest(model_name="tiny", sequence_id="s"))
    assert "sequence_id" in (err.value.details() or "")
    assert (await stubs.ping()).health == '{\n  "status": "Healthy"\n}'
