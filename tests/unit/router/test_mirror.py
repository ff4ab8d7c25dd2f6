"""Policy `mirror` and the engine's shadows: the primary's answer is never delayed or failed
by a shadow, copies beyond max_inflight are dropped, and parity is measured."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.errors import DeadlineExceeded, Unavailable
from gateway.router.circuit import Circuits
from gateway.router.config import CircuitConfig, MirrorRouting
from gateway.router.metrics import PrometheusRouterMetrics
from gateway.router.policies.mirror import Mirror
from gateway.router.stats import VariantView
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.unit.router.fakes import (
    Behaviour,
    Fleet,
    answers,
    hangs,
    raises,
    request,
    router_for,
    waits,
)

ROUTING = {"policy": "mirror", "default": "a", "shadows": ["b"], "max_inflight": 2}


def mirror(fraction: float = 1.0, seed: int = 0) -> Mirror:
    cfg = MirrorRouting(policy="mirror", default="a", shadows=("b", "c"), fraction=fraction)
    return Mirror(cfg, random.Random(seed))


def test_choose_copies_a_share_to_the_shadows_that_can_serve() -> None:
    views = [VariantView("a"), VariantView("c")]
    plan = mirror().choose(views)
    assert plan.primary == "a" and plan.mirror is not None
    assert plan.mirror.shadows == ("c",)
    n = 4_000
    policy = mirror(0.25, seed=3)
    copied = Counter(policy.choose(views).mirror is not None for _ in range(n))
    assert abs(copied[True] / n - 0.25) < 0.04
    assert mirror(0.0).choose(views).mirror is None


def test_a_primary_that_cannot_serve_is_unavailable_never_a_shadow() -> None:
    with pytest.raises(Unavailable):
        mirror().choose([VariantView("b"), VariantView("c")])


async def test_the_copy_goes_after_the_primary_answered_and_is_compared() -> None:
    registry = CollectorRegistry()
    fleet = Fleet(b=answers(scale=1.0 + 1e-6))
    router = router_for(ROUTING, fleet, metrics=PrometheusRouterMetrics(registry))
    routed = await router.route(request(rows=3), fleet.clock() + 1)
    assert (routed.served_by, routed.mirrored) == ("a", ("b",))
    assert routed.response.parameters["by"] == "a"
    await router.drain()
    assert fleet.called == ["a", "b"]
    labels = {"model": "m", "primary": "a", "shadow": "b", "output": "y"}
    assert registry.get_sample_value("servegate_parity_max_abs_diff_count", labels) == 1
    assert 0 < registry.get_sample_value("servegate_parity_max_abs_diff_sum", labels) < 1e-4
    agree = registry.get_sample_value(
        "servegate_parity_argmax_rows_total", {**labels, "agree": "true"}
    )
    assert agree == 3
    ok = {"model": "m", "primary": "a", "shadow": "b", "outcome": "ok"}
    assert registry.get_sample_value("servegate_shadow_total", ok) == 1
    pair = {"model": "m", "primary": "a", "shadow": "b"}
    assert registry.get_sample_value("servegate_shadow_seconds_count", pair) == 1


@pytest.mark.parametrize(
    "shadow",
    [raises(lambda: RuntimeError("bug")), raises(lambda: Unavailable("down")), hangs()],
    ids=["crashes", "refuses", "hangs"],
)
async def test_a_shadow_that_fails_or_hangs_never_touches_the_primary(shadow: Behaviour) -> None:
    fleet = Fleet(b=shadow)
    router = router_for(ROUTING, fleet)
    for _ in range(2):
        routed = await router.route(request(), fleet.clock() + 1)
        assert routed.served_by == "a"
        assert routed.response.parameters["by"] == "a"
    await asyncio.sleep(0)
    await router.aclose()


async def test_copies_beyond_max_inflight_are_dropped_not_queued() -> None:
    gate = asyncio.Event()
    registry = CollectorRegistry()
    fleet = Fleet(b=waits(gate))
    router = router_for(ROUTING, fleet, metrics=PrometheusRouterMetrics(registry))
    mirrored = [(await router.route(request(), fleet.clock() + 1)).mirrored for _ in range(5)]
    await asyncio.sleep(0)
    assert mirrored == [("b",), ("b",), (), (), ()]
    assert fleet.called.count("b") == 2
    dropped = {"model": "m", "primary": "a", "shadow": "b", "outcome": "dropped"}
    assert registry.get_sample_value("servegate_shadow_total", dropped) == 3
    gate.set()
    await router.drain()
    assert (await router.route(request(), fleet.clock() + 1)).mirrored == ("b",)
    await router.drain()


async def test_a_failing_shadow_opens_its_circuit_and_is_left_out() -> None:
    fleet = Fleet(b=raises(lambda: Unavailable("down")))
    circuits = Circuits(CircuitConfig(consecutive_failures=2), clock=fleet.clock)
    router = router_for(ROUTING, fleet, circuits=circuits)
    for _ in range(2):
        await router.route(request(), fleet.clock() + 1)
        await router.drain()
    routed = await router.route(request(), fleet.clock() + 1)
    assert routed.mirrored == ()
    assert fleet.called.count("b") == 2


async def test_a_client_pin_is_never_mirrored() -> None:
    fleet = Fleet()
    router = router_for(ROUTING, fleet)
    routed = await router.route(request(), fleet.clock() + 1, pin="a")
    await router.drain()
    assert (routed.mirrored, fleet.called) == ((), ["a"])


SHADOWS = st.sampled_from(["answers", "differs", "crashes", "refuses", "times_out", "hangs"])


def shadow_behaviour(kind: str) -> Behaviour:
    async def differs(variant: str, req: InferRequest, deadline: float) -> InferResponse:
        return InferResponse("m", (Tensor("y", "INT32", np.zeros((1,), np.int32)),))

    return {
        "answers": answers(scale=2.0),
        "differs": differs,
        "crashes": raises(lambda: RuntimeError("bug")),
        "refuses": raises(lambda: Unavailable("down")),
        "times_out": raises(lambda: DeadlineExceeded("late")),
        "hangs": hangs(),
    }[kind]


@settings(max_examples=50, deadline=None)
@given(st.lists(SHADOWS, min_size=1, max_size=20), st.integers(1, 4))
def test_the_primary_always_answers_whatever_the_shadows_do(
    kinds: list[str], max_inflight: int
) -> None:
    async def scenario() -> None:
        fleet = Fleet()
        routing = {**ROUTING, "shadows": ["b", "c"], "max_inflight": max_inflight}
        router = router_for(routing, fleet)
        for kind in kinds:
            fleet.behaviours["b"] = shadow_behaviour(kind)
            fleet.behaviours["c"] = shadow_behaviour(kinds[0])
            routed = await router.route(request(), fleet.clock() + 1)
            assert routed.served_by == "a"
            assert routed.response.parameters["by"] == "a"
            for shadow in ("b", "c"):
                assert router.shadows.inflight(shadow) <= max_inflight
            await asyncio.sleep(0)
        await router.aclose()
        assert fleet.called.count("a") == len(kinds)

    asyncio.run(scenario())
