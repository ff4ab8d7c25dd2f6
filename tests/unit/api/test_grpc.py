"""The gRPC front end on a real grpc.aio server (127.0.0.1:0) over a FunctionBackend."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from gateway.api.grpc import servicer
from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.errors import Overloaded
from gateway.protocol import v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.doubles import FunctionBackend


def echo(request: InferRequest) -> InferResponse:
    return InferResponse(request.model_name, (Tensor("y", "FP32", request.inputs[0].data + 1),))


@pytest.fixture
def backends() -> dict[tuple[str, str], FunctionBackend]:
    return {
        ("tiny", "a"): FunctionBackend("tiny@a", echo),
        ("tiny", "b"): FunctionBackend("tiny@b", echo),
    }


@pytest.fixture
async def stub(
    tiny_repo: Repository, backends: dict[tuple[str, str], FunctionBackend]
) -> AsyncIterator[V2Stub]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((servicer(DataPlane(tiny_repo, backends)),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield V2Stub(channel)
    await server.stop(0)


def _request(model: str = "tiny") -> pb.ModelInferRequest:
    req = InferRequest(
        model,
        (Tensor("x", "FP32", np.zeros((2, 4), np.float32)),
         Tensor("tag", "BYTES", np.array([b"a", b"b"], dtype=object))),
    )  # fmt: skip
    return v2_grpc.request_to_pb(req)


async def test_infer_answers_with_raw_outputs(stub: V2Stub) -> None:
    reply = await stub.ModelInfer(_request(), timeout=5)
    assert len(reply.raw_output_contents) == 1
    out = v2_grpc.response_from_pb(reply).outputs[0]
    np.testing.assert_array_equal(out.data, np.ones((2, 4), np.float32))


async def test_grpc_deadline_reaches_the_backend(
    stub: V2Stub, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    before = time.monotonic()
    await stub.ModelInfer(_request(), timeout=2.0)
    after = time.monotonic()
    ((_, deadline),) = backends[("tiny", "a")].calls
    # The caller's 2 s, not the 10 s default; gRPC re-encodes the timeout on the wire and
    # the server counts it from arrival, so allow it a little slack either way.
    assert before + 1.9 <= deadline <= after + 2.1


async def test_metadata_pin_picks_the_variant(
    stub: V2Stub, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    reply = await stub.ModelInfer(_request(), metadata=(("servegate-variant", "b"),), timeout=5)
    assert v2_grpc.response_from_pb(reply).parameters["variant"] == "b"
    assert len(backends[("tiny", "b")].calls) == 1


async def test_overload_is_resource_exhausted_with_a_retry_hint(
    stub: V2Stub, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    def full(_: InferRequest) -> InferResponse:
        raise Overloaded("queue full", retry_after=0.5)

    backends[("tiny", "a")].handler = full
    call = stub.ModelInfer(_request(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "queue full"
    trailing = tuple(info.value.trailing_metadata() or ())
    assert ("retry-after", "1") in trailing and ("grpc-retry-pushback-ms", "500") in trailing


async def test_server_and_model_metadata(stub: V2Stub) -> None:
    server = await stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=5)
    assert server.name == "servegate" and "binary_tensor_data" in server.extensions
    meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny"), timeout=5)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("x", "FP32", [-1, 4]), ("tag", "BYTES", [-1])
    ]  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_clients_own_deadline_is_honoured_as_given(
    stub: V2Stub, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    """30 s is 30 s: the model's default (10 s here) applies only to a client that sets none."""
    before = time.monotonic()
    await stub.ModelInfer(_request(), timeout=30.0)
    ((_, deadline),) = backends[("tiny", "a")].calls
    assert 29.0 < deadline - before <= 30.2  # gRPC re-encodes the timeout: a little slack
    await stub.ModelInfer(_request())  # no deadline at all: the default
    _, (_, default) = backends[("tiny", "a")].calls
    assert 9.0 < default - time.monotonic() <= 10.0


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff", b"\x0a\x05ab", b"\x2a\x03\x0a\x01", b"\x3a\xff\xff\xff\xff\x0f"],
)
async def test_an_undecodable_message_is_invalid_argument(
    tiny_repo: Repository, backends: dict[tuple[str, str], FunctionBackend], data: bytes
) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((servicer(DataPlane(tiny_repo, backends)),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(data, timeout=5)
    finally:
        await server.stop(0)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "undecodable ModelInferRequest message"
