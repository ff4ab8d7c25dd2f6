"""The framed Unix-socket hop to a local v2 runner: same answers as gRPC, errors mapped the
same way, and a runner that dies or stalls fails the call at once or at its deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from gateway import client
from gateway.backends.v2 import V2Backend
from gateway.config import Repository
from gateway.errors import BadRequest, DeadlineExceeded, Unavailable
from gateway.protocol import framed
from gateway.protocol.pb import v2_pb2 as pb
from gateway.supervisor import Supervisor
from gateway.tensors import InferRequest, Tensor
from tests.live import RunningGateway, infer, start_gateway

pytestmark = pytest.mark.integration

MAX_BYTES = 64 * 1024 * 1024


def _start(repository: Repository, workdir: Path) -> Supervisor:
    sup = Supervisor(repository, workdir)
    asyncio.run(sup.start(["onnx"]))
    return sup


def _stop(sup: Supervisor) -> None:
    sup.stop()
    assert not any(r.alive() for r in sup.runners.values()), "runner not reaped"


@pytest.fixture(scope="module")
def onnx_runner(
    repository: Repository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Supervisor]:
    """An onnx runner of this module's own (gRPC and its framed socket)."""
    sup = _start(repository, tmp_path_factory.mktemp("framed"))
    yield sup
    _stop(sup)


def _backend(endpoint: str) -> V2Backend:
    return V2Backend("digits@onnx", endpoint, "digits", max_message_bytes=MAX_BYTES)


def _request(x: np.ndarray) -> InferRequest:
    return InferRequest(model_name="digits", inputs=(Tensor("pixels", "FP32", x),))


def test_the_supervisor_names_the_socket_for_the_gateway(onnx_runner: Supervisor) -> None:
    runner = onnx_runner.runners["onnx"]
    assert runner.socket_path is not None and runner.socket_path.exists()
    assert onnx_runner.gateway_endpoints() == {"onnx": framed.endpoint(str(runner.socket_path))}
    assert onnx_runner.gateway_endpoints(framed=False) == {"onnx": runner.endpoint}


async def test_framed_answer_equals_the_grpc_answer(
    onnx_runner: Supervisor, digits: dict[str, np.ndarray]
) -> None:
    x = digits["inputs"][:5]
    grpc_backend = _backend(onnx_runner.gateway_endpoints(framed=False)["onnx"])
    framed_backend = _backend(onnx_runner.gateway_endpoints()["onnx"])
    try:
        deadline = time.monotonic() + 10
        via_grpc = await grpc_backend.infer(_request(x), deadline=deadline)
        via_socket = await framed_backend.infer(_request(x), deadline=deadline)
        assert await framed_backend.ready()
    finally:
        await grpc_backend.aclose()
        await framed_backend.aclose()
    assert via_socket.model_version == via_grpc.model_version
    assert [(t.name, t.datatype) for t in via_socket.outputs] == [("logits", "FP32")]
    np.testing.assert_array_equal(via_socket.outputs[0].data, via_grpc.outputs[0].data)


async def test_concurrent_calls_share_a_bounded_pool(
    onnx_runner: Supervisor, digits: dict[str, np.ndarray]
) -> None:
    backend = _backend(onnx_runner.gateway_endpoints()["onnx"])
    rows = [digits["inputs"][i : i + 1] for i in range(40)]
    try:
        deadline = time.monotonic() + 10
        got = await asyncio.gather(*(backend.infer(_request(r), deadline=deadline) for r in rows))
        alone = await backend.infer(_request(digits["inputs"][:40]), deadline=deadline)
    finally:
        await backend.aclose()
    np.testing.assert_allclose(
        np.concatenate([g.outputs[0].data for g in got]), alone.outputs[0].data, atol=1e-5
    )


def test_gateway_over_the_socket_answers_as_the_runner_over_grpc(
    onnx_runner: Supervisor, repository: Repository, digits: dict[str, np.ndarray]
) -> None:
    gw = start_gateway(repository, onnx_runner.gateway_endpoints())
    try:
        x = digits["inputs"][:3]
        with grpc.insecure_channel(onnx_runner.runners["onnx"].endpoint) as channel:
            direct = client.infer_grpc(channel, "digits", {"pixels": x}).outputs[0].data
        for protocol in ("grpc", "binary"):
            got = infer(gw, protocol, "digits@onnx", {"pixels": x}).outputs[0].data
            np.testing.assert_array_equal(got, direct)
    finally:
        gw.stop()


async def _raw_call(path: str, data: bytes) -> tuple[int, bytes, bytes]:
    """Sends raw bytes to a runner's socket: (status, payload, what follows until EOF)."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        head = await reader.readexactly(framed.HEADER_SIZE)
        status, length = framed.decode_header(
            head, allowed=framed.RESPONSE_STATUSES, max_length=MAX_BYTES
        )
        payload = await reader.readexactly(length)
        writer.write_eof()
        rest = await asyncio.wait_for(reader.read(), 5)
        return status, payload, rest
    finally:
        writer.close()


async def test_a_bad_shape_sent_to_the_socket_is_invalid_argument(onnx_runner: Supervisor) -> None:
    path = str(onnx_runner.runners["onnx"].socket_path)
    msg = pb.ModelInferRequest(model_name="digits")
    msg.inputs.add(name="pixels", datatype="FP32", shape=[1, 63])
    msg.raw_input_contents.append(b"\x00" * 4 * 63)
    status, payload, _ = await _raw_call(path, framed.encode(framed.INFER, msg.SerializeToString()))
    assert status == framed.ERROR
    code, message = framed.decode_error(payload)
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "pixels" in message

    backend = _backend(framed.endpoint(path))
    try:
        bad = _request(np.zeros((1, 63), np.float32))
        with pytest.raises(BadRequest, match=r"variant 'digits@onnx': INVALID_ARGUMENT: .*pixels"):
            await backend.infer(bad, deadline=time.monotonic() + 10)
    finally:
        await backend.aclose()
    unknown = V2Backend("nope@onnx", framed.endpoint(path), "nope", max_message_bytes=MAX_BYTES)
    try:
        # As over gRPC: a model missing on its runner means the variant cannot serve now.
        with pytest.raises(Unavailable, match="NOT_FOUND"):
            await unknown.infer(bad, deadline=time.monotonic() + 10)
    finally:
        await unknown.aclose()


async def test_a_malformed_frame_is_answered_then_the_runner_hangs_up(
    onnx_runner: Supervisor,
) -> None:
    path = str(onnx_runner.runners["onnx"].socket_path)
    status, payload, rest = await _raw_call(path, framed.header(9, 0))
    assert status == framed.ERROR
    assert framed.decode_error(payload) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "unknown frame kind 9",
    )
    assert rest == b""  # closed: a stream that lost its framing is never read on
    status, payload, _ = await _raw_call(path, framed.encode(framed.INFER, b"\xff\xff"))
    assert status == framed.ERROR
    assert framed.decode_error(payload) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "undecodable request message",
    )


@pytest.fixture
async def stalled_socket(tmp_path: Path) -> AsyncIterator[tuple[str, list[int]]]:
    """A socket that accepts and reads but never answers; yields (path, connection ids)."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(id(writer))
        await reader.read()  # until the client hangs up
        writer.close()

    path = str(tmp_path / "stall.sock")
    server = await asyncio.start_unix_server(handle, path=path)
    yield path, seen
    server.close()
    await server.wait_closed()


async def test_a_deadline_raises_deadline_exceeded_and_drops_the_connection(
    stalled_socket: tuple[str, list[int]], digits: dict[str, np.ndarray]
) -> None:
    path, seen = stalled_socket
    backend = _backend(framed.endpoint(path))
    try:
        for expected in (1, 2):
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="DEADLINE_EXCEEDED"):
                await backend.infer(_request(digits["inputs"][:1]), deadline=t0 + 0.2)
            assert time.monotonic() - t0 < 2.0  # promptly: far below the 10-30 s alternatives
            assert len(seen) == expected  # the timed-out connection was not reused
    finally:
        await backend.aclose()


async def test_no_socket_is_unavailable_at_once(tmp_path: Path) -> None:
    backend = _backend(framed.endpoint(str(tmp_path / "absent.sock")))
    try:
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="UNAVAILABLE"):
            await backend.infer(_request(np.zeros((1, 64), np.float32)), deadline=t0 + 10)
        assert time.monotonic() - t0 < 2.0  # promptly: far below the 10-30 s alternatives
        assert not await backend.ready()
    finally:
        await backend.aclose()


@pytest.fixture
def doomed(repository: Repository, tmp_path: Path) -> Iterator[tuple[Supervisor, RunningGateway]]:
    """A runner of its own (this test kills it) and a gateway over its socket."""
    sup = _start(repository, tmp_path)
    gw = start_gateway(repository, sup.gateway_endpoints())
    yield sup, gw
    gw.stop()
    _stop(sup)


def test_a_killed_runner_gives_503_at_once(
    doomed: tuple[Supervisor, RunningGateway], digits: dict[str, np.ndarray]
) -> None:
    sup, gw = doomed
    x = digits["inputs"][:1]
    assert infer(gw, "binary", "digits@onnx", {"pixels": x}).outputs  # a pooled connection
    pid = sup.runners["onnx"].pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    sup.runners["onnx"].stop()  # reaps it
    body = {
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]
    }
    for _ in range(2):  # the pooled connection, then a fresh connect
        t0 = time.monotonic()
        reply = httpx.post(f"{gw.http_url}/v2/models/digits@onnx/infer", json=body, timeout=30)
        assert reply.status_code == 503, reply.text
        assert time.monotonic() - t0 < 2.0  # promptly: far below the 10-30 s alternatives
