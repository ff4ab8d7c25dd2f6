"""ReplicaSet over doubles: balancing, ejection at the first failure, back in on ready."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import numpy as np
import pytest

from gateway.backends.replicas import Replica, ReplicaSet, choose, resolve
from gateway.errors import BadRequest, Unavailable, Unreachable
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.doubles import FunctionBackend

REQUEST = InferRequest("m", (Tensor("x", "FP32", np.zeros((1, 2), np.float32)),))


def answer(request: InferRequest) -> InferResponse:
    return InferResponse("m", request.inputs)


def test_two_choices_prefer_the_less_loaded_and_never_a_replica_out_of_service() -> None:
    rng = random.Random(1)
    busy, idle, out = (Replica(e, FunctionBackend(e, answer)) for e in ("a", "b", "c"))
    busy.outstanding, out.up = 5, False
    picks = Counter(choose([busy, idle, out], rng).endpoint for _ in range(200))  # type: ignore[union-attr]
    assert picks == {"b": 200}  # the idle one whenever it is drawn; c never
    evenly = [Replica(e, FunctionBackend(e, answer)) for e in "abcd"]
    spread = Counter(choose(evenly, rng).endpoint for _ in range(400))  # type: ignore[union-attr]
    assert set(spread) == set("abcd") and min(spread.values()) > 50
    assert choose([out], rng) is None


async def test_a_failing_replica_is_taken_out_at_once_and_probed_back_in() -> None:
    backends = {e: FunctionBackend(e, answer) for e in ("r1", "r2")}
    rs = ReplicaSet("m@onnx", ["r1", "r2"], backends.__getitem__, recheck_s=0.02)

    def refused(_: InferRequest) -> InferResponse:
        raise Unavailable("connection refused")

    backends["r1"].handler = refused
    backends["r1"].is_ready = False
    outcomes = []
    for _ in range(20):
        try:
            await rs.infer(REQUEST, deadline=1e9)
            outcomes.append("ok")
        except Unavailable:
            outcomes.append("lost")
    assert outcomes.count("lost") == 1  # only the call that found it dead
    assert [r.up for r in rs.replicas] == [False, True]
    backends["r1"].handler, backends["r1"].is_ready = answer, True
    async with asyncio.timeout(2):
        while not rs.replicas[0].up:  # noqa: ASYNC110 (no event: the set polls itself)
            await asyncio.sleep(0.01)
    calls = len(backends["r1"].calls)
    for _ in range(20):
        await rs.infer(REQUEST, deadline=1e9)
    assert len(backends["r1"].calls) > calls  # back in service, and used
    await rs.aclose()
    assert all(b.closed for b in backends.values())


async def test_an_error_that_is_the_requests_own_fault_does_not_eject() -> None:
    def bad(_: InferRequest) -> InferResponse:
        raise BadRequest("wrong shape")

    rs = ReplicaSet("m@onnx", ["r1"], lambda e: FunctionBackend(e, bad))
    with pytest.raises(BadRequest):
        await rs.infer(REQUEST, deadline=1e9)
    assert rs.replicas[0].up
    await rs.aclose()


async def test_with_every_replica_out_the_call_is_unavailable_with_a_hint() -> None:
    def refused(_: InferRequest) -> InferResponse:
        raise Unavailable("refused")

    rs = ReplicaSet("m@onnx", ["r1", "r2"], lambda e: FunctionBackend(e, refused, is_ready=False))
    for _ in range(2):
        with pytest.raises(Unavailable):
            await rs.infer(REQUEST, deadline=1e9)
    with pytest.raises(Unavailable, match="no replica in service") as info:
        await rs.infer(REQUEST, deadline=1e9)
    assert info.value.retry_after is not None
    assert not await rs.ready()
    await rs.aclose()


async def test_a_dns_name_becomes_one_replica_per_address() -> None:
    made: list[str] = []

    def make(endpoint: str) -> FunctionBackend:
        made.append(endpoint)
        return FunctionBackend(endpoint, answer)

    rs = ReplicaSet("m@onnx", ["dns:///localhost:9000"], make)
    await rs.infer(REQUEST, deadline=1e9)
    assert made and set(made) == set(resolve("dns:///localhost:9000"))
    assert "127.0.0.1:9000" in made
    await rs.aclose()


async def test_a_call_that_never_reached_its_replica_goes_to_another() -> None:
    backends = {e: FunctionBackend(e, answer) for e in ("r1", "r2")}

    def refused(_: InferRequest) -> InferResponse:
        raise Unreachable("connection refused")

    backends["r1"].handler = refused
    backends["r1"].is_ready = False
    rs = ReplicaSet("m@onnx", ["r1", "r2"], backends.__getitem__, recheck_s=10)
    for _ in range(20):
        await rs.infer(REQUEST, deadline=1e9)  # none lost
    assert len(backends["r1"].calls) == 1 and len(backends["r2"].calls) == 20
    await rs.aclose()
