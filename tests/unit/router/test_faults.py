"""Fault injection: the pure decision converges to its percentages; the wrapper delays within
the deadline and aborts without reaching the runner; failover rides over an abort."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import DeadlineExceeded, GatewayError, Unavailable
from gateway.router.circuit import Circuits
from gateway.router.config import CircuitConfig, FaultConfig, parse_routing
from gateway.router.engine import Router
from gateway.router.faults import NO_FAULT, Faults, decide
from gateway.router.policies import make_policy
from gateway.tensors import InferRequest, InferResponse
from tests.unit.router.fakes import FakeClock, Fleet, request


@settings(max_examples=20, deadline=None)
@given(st.floats(0, 100), st.floats(0, 100), st.integers(0, 2**32))
def test_decisions_converge_to_the_percentages(delay: float, abort: float, seed: int) -> None:
    fault = FaultConfig(delay_ms=50, delay_percent=delay, abort_status=503, abort_percent=abort)
    rng, n = random.Random(seed), 4_000
    drawn = [decide(fault, rng) for _ in range(n)]
    delayed = sum(d.delay_s == 0.05 for d in drawn) / n
    aborted = sum(d.abort == 503 for d in drawn) / n
    for share, percent in ((delayed, delay), (aborted, abort)):
        p = percent / 100
        assert abs(share - p) <= 6 * (p * (1 - p) / n) ** 0.5 + 1 / n


def test_no_fault_and_always() -> None:
    assert decide(None, random.Random(0)) is NO_FAULT
    always = FaultConfig(delay_ms=5, delay_percent=100, abort_status=500, abort_percent=100)
    decision = decide(always, random.Random(0))
    assert (decision.delay_s, decision.abort) == (0.005, 500)


class Sleeps:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


def faults_on(variant: str, fault: FaultConfig) -> tuple[Faults, Fleet, Sleeps]:
    fleet = Fleet()
    sleeps = Sleeps(fleet.clock)
    faults = Faults({variant: fault}, rng=random.Random(0), clock=fleet.clock, sleep=sleeps)
    return faults, fleet, sleeps


@pytest.mark.parametrize(
    ("status", "error"), [(500, GatewayError), (503, Unavailable), (504, DeadlineExceeded)]
)
async def test_an_abort_never_reaches_the_runner(status: int, error: type) -> None:
    faults, fleet, _ = faults_on("a", FaultConfig(abort_status=status, abort_percent=100))
    send = faults.wrap(fleet.send)
    with pytest.raises(error, match=f"injected fault {status}"):
        await send("a", request(), fleet.clock() + 1)
    await send("b", request(), fleet.clock() + 1)
    assert fleet.called == ["b"]


async def test_a_delay_then_the_call() -> None:
    faults, fleet, sleeps = faults_on("a", FaultConfig(delay_ms=50, delay_percent=100))
    await faults.wrap(fleet.send)("a", request(), fleet.clock() + 1)
    assert sleeps.slept == [0.05]
    assert fleet.calls == [("a", 1000.05)]


async def test_a_delay_never_outlives_the_deadline() -> None:
    faults, fleet, sleeps = faults_on("a", FaultConfig(delay_ms=500, delay_percent=100))
    with pytest.raises(DeadlineExceeded, match="injected delay"):
        await faults.wrap(fleet.send)("a", request(), fleet.clock() + 0.2)
    assert sleeps.slept == [pytest.approx(0.2)]
    assert fleet.calls == []


async def test_faults_change_at_run_time() -> None:
    faults, fleet, _ = faults_on("a", FaultConfig(abort_status=503, abort_percent=100))
    send = faults.wrap(fleet.send)
    faults.set("a", None)
    await send("a", request(), fleet.clock() + 1)
    faults.set("b", FaultConfig(abort_status=500, abort_percent=100))
    assert set(faults.current) == {"b"}
    with pytest.raises(GatewayError):
        await send("b", request(), fleet.clock() + 1)
    faults.replace({})
    await send("b", request(), fleet.clock() + 1)
    assert fleet.called == ["a", "b"]


async def test_per_variant_wrapper() -> None:
    faults, fleet, _ = faults_on("a", FaultConfig(abort_status=503, abort_percent=100))

    async def call(req: InferRequest, deadline: float) -> InferResponse:
        return await fleet.send("a", req, deadline)

    with pytest.raises(Unavailable):
        await faults.wrap_variant("a", call)(request(), fleet.clock() + 1)
    await faults.wrap_variant("b", call)(request(), fleet.clock() + 1)
    assert fleet.called == ["a"]


async def test_failover_answers_every_request_while_a_variant_aborts() -> None:
    fleet = Fleet()
    faults = Faults(
        {"a": FaultConfig(abort_status=503, abort_percent=30)},
        rng=random.Random(1),
        clock=fleet.clock,
    )
    routing = parse_routing({"policy": "failover", "default": "a", "order": ["b"]})
    router = Router(
        "m",
        make_policy(routing, random.Random(0)),
        variants=("a", "b"),
        send=faults.wrap(fleet.send),
        unavailable=fleet.unavailable,
        clock=fleet.clock,
        circuits=Circuits(
            CircuitConfig(consecutive_failures=1000, min_calls=1000), clock=fleet.clock
        ),
    )
    served = [(await router.route(request(), 1e9)).served_by for _ in range(200)]
    assert 30 < served.count("b") < 90  # about 30 % aborted, each answered by b
    assert fleet.called.count("a") == served.count("a")  # an aborted call never reached a
    assert fleet.called.count("b") == served.count("b")
