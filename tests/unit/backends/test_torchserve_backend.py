"""TorchServeBackend against a scripted TorchServe: a real grpc.aio server on loopback.

The real TorchServe is in tests/integration/test_torchserve.py; here the server answers
what a test scripts, so the conditions that the real one produces only by timing (calls
queued behind a dying worker, jobs it drops unanswered) are exact.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from gateway.backends import torchserve as ts
from gateway.backends.torchserve import TorchServeBackend
from gateway.errors import BadRequest, GatewayError, Overloaded, Unavailable
from gateway.protocol import torchserve_framing as framing
from gateway.protocol.pb import torchserve_management_pb2 as mpb
from gateway.protocol.pb import torchserve_pb2 as pb
from gateway.tensors import InferRequest, Tensor, decode_raw

X = np.arange(6, dtype=np.float32).reshape(2, 3)
REQUEST = InferRequest("digits", (Tensor.from_numpy("pixels", X),), model_version="1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTorchServe:
    """Predictions and DescribeModel, answering as the test sets `mode` and `status`."""

    def __init__(self) -> None:
        self.mode = "double"  # double | hang | a (code, details) pair to abort with
        self.status = "READY"  # the one worker's status in DescribeModel
        self.requests: list[pb.PredictionsRequest] = []
        self.server = grpc.aio.server()
        self.endpoint = ""
        self._arrived = asyncio.Condition()

    async def received(self, n: int) -> None:
        """Returns once `n` Predictions calls have arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)

    async def predictions(
        self, request: pb.PredictionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictionResponse:
        async with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
        if self.mode == "hang":
            await asyncio.Event().wait()
        if isinstance(self.mode, tuple):
            await context.abort(*self.mode)
        datatype, shape, raw = framing.unframe(request.input["pixels"])
        doubled = decode_raw(datatype, shape, raw) * 2
        out = framing.frame("FP32", doubled.shape, doubled.tobytes())
        return pb.PredictionResponse(prediction=framing.bundle({"logits": out}))

    async def describe(
        self, request: mpb.DescribeModelRequest, context: grpc.aio.ServicerContext
    ) -> mpb.ManagementResponse:
        if request.model_name != "digits":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Model not found: {request.model_name}")
        workers = [{"id": "9000", "status": self.status, "pid": 1}]
        return mpb.ManagementResponse(msg=json.dumps([{"modelName": "digits", "workers": workers}]))

    async def start(self) -> None:
        def handler(fn: object, req: type, resp: type) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "org.pytorch.serve.grpc.inference.InferenceAPIsService",
                    {
                        "Predictions": handler(
                            self.predictions, pb.PredictionsRequest, pb.PredictionResponse
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "org.pytorch.serve.grpc.management.ManagementAPIsService",
                    {
                        "DescribeModel": handler(
                            self.describe, mpb.DescribeModelRequest, mpb.ManagementResponse
                        )
                    },
                ),
            )
        )
        self.endpoint = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        await self.server.start()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTorchServe]:
    server = FakeTorchServe()
    await server.start()
    yield server
    await server.server.stop(0)


def make_backend(fake: FakeTorchServe, clock: Clock | None = None) -> TorchServeBackend:
    return TorchServeBackend(
        "digits@pytorch",
        fake.endpoint,
        "digits",
        max_message_bytes=1 << 20,
        clock=clock or time.monotonic,
        management_endpoint=fake.endpoint,
    )


@pytest.fixture
async def backend(fake: FakeTorchServe) -> AsyncIterator[TorchServeBackend]:
    b = make_backend(fake)
    yield b
    await b.aclose()


def deadline(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


def test_management_address_defaults_to_torchserves_layout() -> None:
    assert ts.management_endpoint_for("10.0.0.5:7070") == "10.0.0.5:7071"
    assert ts.management_endpoint_for("[::1]:7070") == "[::1]:7071"


async def test_tensors_travel_framed_both_ways(
    fake: FakeTorchServe, backend: TorchServeBackend
) -> None:
    reply = await backend.infer(REQUEST, deadline=deadline())
    (sent,) = fake.requests
    assert (sent.model_name, sent.model_version, list(sent.input)) == ("digits", "1", ["pixels"])
    (out,) = reply.outputs
    assert (out.name, out.datatype) == ("logits", "FP32")
    np.testing.assert_array_equal(out.data, X * 2)


@pytest.mark.parametrize(
    ("code", "details", "error"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Worker died.", Unavailable),
        (grpc.StatusCode.UNAVAILABLE, "Prediction failed", Unavailable),
        (grpc.StatusCode.INTERNAL, "Model not found: m\nx.ModelNotFoundException", Unavailable),
        (grpc.StatusCode.INTERNAL, "Model version: 1 does not exist for model: digits\n"
         "org.pytorch.serve.archive.model.ModelVersionNotFoundException", Unavailable),
        (grpc.StatusCode.INVALID_ARGUMENT, "not a tensor frame", BadRequest),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", Overloaded),
        (grpc.StatusCode.INTERNAL, "something else", GatewayError),
    ],
)  # fmt: skip
async def test_torchserve_codes_map_to_gateway_errors(
    fake: FakeTorchServe,
    backend: TorchServeBackend,
    code: grpc.StatusCode,
    details: str,
    error: type[GatewayError],
) -> None:
    fake.mode = (code, details)
    with pytest.raises(error) as info:
        await backend.infer(REQUEST, deadline=deadline())
    assert type(info.value) is error
    assert "digits@pytorch" in info.value.message


async def test_worker_died_fails_the_calls_queued_behind_it(
    fake: FakeTorchServe, backend: TorchServeBackend
) -> None:
    fake.mode = "hang"
    queued = [asyncio.create_task(backend.infer(REQUEST, deadline=deadline())) for _ in range(3)]
    await fake.received(3)
    fake.mode = (grpc.StatusCode.RESOURCE_EXHAUSTED, "Worker died.")
    with pytest.raises(Unavailable, match="Worker died"):
        await backend.infer(REQUEST, deadline=deadline())
    for task in queued:  # answered now, long before their 30 s deadline
        with pytest.raises(Unavailable, match="worker died while this request waited"):
            await task


async def test_down_until_the_worker_is_ready_again(fake: FakeTorchServe) -> None:
    clock = Clock()
    backend = make_backend(fake, clock)
    try:
        fake.mode = (grpc.StatusCode.RESOURCE_EXHAUSTED, "Worker died.")
        with pytest.raises(Unavailable):
            await backend.infer(REQUEST, deadline=clock() + 30)
        fake.mode, fake.status = "double", "UNLOADING"
        for _ in range(3):  # refused without a call to TorchServe (one status read at most)
            with pytest.raises(Unavailable, match="no live worker"):
                await backend.infer(REQUEST, deadline=clock() + 30)
        assert len(fake.requests) == 1
        fake.status = "READY"
        with pytest.raises(Unavailable):  # read less than RECHECK_S ago: still down
            await backend.infer(REQUEST, deadline=clock() + 30)
        clock.now += ts.RECHECK_S
        await backend.infer(REQUEST, deadline=clock() + 30)
        assert len(fake.requests) == 2
    finally:
        await backend.aclose()


async def test_a_call_whose_worker_died_silently_fails_at_the_next_status_read(
    fake: FakeTorchServe, backend: TorchServeBackend
) -> None:
    """TorchServe drops a forming batch's jobs when the worker dies: no answer ever comes."""
    fake.mode, fake.status = "hang", "UNLOADING"
    with pytest.raises(Unavailable, match="worker died"):  # not DeadlineExceeded after 30 s
        await backend.infer(REQUEST, deadline=deadline())


async def test_a_slow_call_with_a_live_worker_is_left_alone(
    fake: FakeTorchServe, backend: TorchServeBackend
) -> None:
    fake.mode = "hang"
    call = asyncio.create_task(backend.infer(REQUEST, deadline=deadline(ts.WATCH_S * 2.5)))
    with pytest.raises(GatewayError) as info:
        await call
    assert info.value.http_status == 504  # its own deadline, after two status reads


async def test_ready_is_the_worker_status(fake: FakeTorchServe, backend: TorchServeBackend) -> None:
    assert await backend.ready()
    fake.status = "UNLOADING"
    assert not await backend.ready()
    missing = TorchServeBackend(
        "nope@pytorch",
        fake.endpoint,
        "nope",
        max_message_bytes=1 << 20,
        management_endpoint=fake.endpoint,
    )
    try:
        assert not await missing.ready()
    finally:
        await missing.aclose()


async def test_errors_that_say_nothing_about_the_worker_leave_it_up(
    fake: FakeTorchServe, backend: TorchServeBackend
) -> None:
    fake.mode = (
        grpc.StatusCode.INTERNAL,
        "Model version: 7 does not exist\nx.ModelVersionNotFoundException",
    )
    with pytest.raises(Unavailable):
        await backend.infer(REQUEST, deadline=deadline())
    fake.mode = "double"
    await backend.infer(REQUEST, deadline=deadline())
    assert len(fake.requests) == 2
