"""The Router engine: pins, circuits respected by every policy, runtime policy changes,
errors that say why, and make_policy."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.errors import BadRequest, ModelNotFound, Unavailable
from gateway.router.circuit import CircuitOpen, Circuits, CircuitState
from gateway.router.config import CircuitConfig, parse_routing
from gateway.router.metrics import PrometheusRouterMetrics
from gateway.router.policies import POLICIES, make_policy
from tests.unit.router.fakes import Fleet, ManualTimer, raises, request, router_for, waits

CONFIGS: list[dict[str, Any]] = [
    {"default": "a"},
    {"policy": "weighted", "default": "a", "weights": {"a": 40, "b": 30, "c": 30}},
    {"policy": "failover", "default": "a", "order": ["b", "c"]},
    {"policy": "fastest", "default": "a"},
    {"policy": "fastest", "default": "a", "by": "outstanding"},
    {"policy": "hedged", "default": "a", "order": ["b", "c"], "after_ms": 1},
    {"policy": "mirror", "default": "a", "shadows": ["b", "c"]},
]


def test_make_policy_is_a_lookup_on_the_tag() -> None:
    for data in CONFIGS:
        config = parse_routing(data)
        policy = make_policy(config, random.Random(0))
        assert type(policy) is POLICIES[config.policy]
        assert policy.config is config
    assert set(POLICIES) == {"pinned", "weighted", "failover", "fastest", "hedged", "mirror"}


async def test_a_pin_wins_over_the_policy() -> None:
    fleet = Fleet()
    router = router_for(CONFIGS[1], fleet)
    for _ in range(5):
        assert (await router.route(request(), 1e9, pin="c")).served_by == "c"
    assert fleet.called == ["c"] * 5


async def test_a_pin_is_not_failed_over() -> None:
    fleet = Fleet(b=raises(lambda: Unavailable("b no")))
    router = router_for(CONFIGS[2], fleet)
    with pytest.raises(Unavailable, match="b no"):
        await router.route(request(), 1e9, pin="b")
    assert fleet.called == ["b"]


async def test_a_pin_to_a_down_or_unknown_variant() -> None:
    fleet = Fleet()
    fleet.down.add("b")
    router = router_for(CONFIGS[0], fleet)
    with pytest.raises(Unavailable, match="b is down"):
        await router.route(request(), 1e9, pin="b")
    with pytest.raises(ModelNotFound, match="no variant 'z'"):
        await router.route(request(), 1e9, pin="z")
    assert fleet.calls == []


async def test_a_pin_respects_an_open_circuit() -> None:
    fleet = Fleet(b=raises(lambda: Unavailable("b no")))
    circuits = Circuits(CircuitConfig(consecutive_failures=2, cooldown_s=3), clock=fleet.clock)
    router = router_for(CONFIGS[0], fleet, circuits=circuits)
    for _ in range(2):
        with pytest.raises(Unavailable):
            await router.route(request(), 1e9, pin="b")
    with pytest.raises(CircuitOpen) as caught:
        await router.route(request(), 1e9, pin="b")
    assert caught.value.retry_after == 3
    assert fleet.called == ["b", "b"]
    assert router.circuit_states() == {
        "a": CircuitState.CLOSED,
        "b": CircuitState.OPEN,
        "c": CircuitState.CLOSED,
    }


async def test_a_client_error_never_opens_a_circuit() -> None:
    fleet = Fleet(a=raises(lambda: BadRequest("bad")))
    circuits = Circuits(CircuitConfig(consecutive_failures=1), clock=fleet.clock)
    router = router_for(CONFIGS[0], fleet, circuits=circuits)
    for _ in range(3):
        with pytest.raises(BadRequest):
            await router.route(request(), 1e9)
    assert router.circuit_states()["a"] is CircuitState.CLOSED


async def test_failures_open_the_circuit_and_failover_skips_it_then_probes_it_back() -> None:
    fleet = Fleet(a=raises(lambda: Unavailable("a no")))
    registry = CollectorRegistry()
    circuits = Circuits(CircuitConfig(consecutive_failures=2, cooldown_s=5), clock=fleet.clock)
    metrics = PrometheusRouterMetrics(registry)
    router = router_for(CONFIGS[2], fleet, circuits=circuits, metrics=metrics)
    for _ in range(4):
        assert (await router.route(request(), 1e9)).served_by == "b"
    assert fleet.called == ["a", "b", "a", "b", "b", "b"]
    fleet.clock.advance(5)
    del fleet.behaviours["a"]  # healed
    assert (await router.route(request(), 1e9)).served_by == "a"  # the half-open probe
    assert router.circuit_states()["a"] is CircuitState.CLOSED


async def test_no_variant_can_serve_says_why_with_the_soonest_retry() -> None:
    fleet = Fleet(c=raises(lambda: Unavailable("c no")))
    fleet.down.update({"a", "b"})
    circuits = Circuits(CircuitConfig(consecutive_failures=1, cooldown_s=7), clock=fleet.clock)
    router = router_for(CONFIGS[3], fleet, circuits=circuits)
    with pytest.raises(Unavailable):
        await router.route(request(), 1e9)
    with pytest.raises(Unavailable, match="a: a is down; b: b is down; c: circuit open") as caught:
        await router.route(request(), 1e9)
    assert caught.value.retry_after == 1.0


async def test_set_policy_applies_to_requests_that_start_after_it() -> None:
    gate = asyncio.Event()
    fleet = Fleet(a=waits(gate))
    router = router_for(CONFIGS[0], fleet)
    in_flight = asyncio.create_task(router.route(request(), 1e9))
    await asyncio.sleep(0)
    router.set_policy(make_policy(parse_routing({"default": "b"}), random.Random(0)))
    assert (await router.route(request(), 1e9)).served_by == "b"
    gate.set()
    assert (await in_flight).served_by == "a"
    assert router.policy.config.default == "b"


async def test_routed_metrics_name_the_policy() -> None:
    registry = CollectorRegistry()
    fleet = Fleet()
    router = router_for(CONFIGS[2], fleet, metrics=PrometheusRouterMetrics(registry))
    await router.route(request(), 1e9)
    await router.route(request(), 1e9, pin="c")
    sample = registry.get_sample_value
    assert sample("servegate_routed_total", {"model": "m", "policy": "failover", "variant": "a"})
    assert sample("servegate_routed_total", {"model": "m", "policy": "pin", "variant": "c"})


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(CONFIGS),
    st.sets(st.sampled_from("abc")),
    st.sets(st.sampled_from("abc")),
    st.integers(0, 2**16),
)
def test_no_policy_ever_sends_to_a_variant_that_is_down_or_open(
    config: dict[str, Any], down: set[str], tripped: set[str], seed: int
) -> None:
    async def scenario() -> None:
        fleet = Fleet()
        circuits = Circuits(CircuitConfig(consecutive_failures=1), clock=fleet.clock)
        for name in tripped:  # one runner-side failure each: open
            breaker = circuits.breaker(name)
            permit = breaker.acquire()
            assert permit is not None
            breaker.record(permit, ok=False, failed=True)
        fleet.down.update(down)
        router = router_for(config, fleet, seed=seed, circuits=circuits, sleep=ManualTimer().sleep)
        for i in range(10):
            with contextlib.suppress(Unavailable):
                await router.route(request(), 1e9, key=f"k{i}")
        await router.aclose()
        assert not set(fleet.called) & (down | tripped)

    asyncio.run(scenario())
