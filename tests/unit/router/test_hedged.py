"""Policy `hedged` and the engine's race: the first answer wins, the loser is always
cancelled, and hedges never exceed their budget. Timers are fired by hand."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.errors import BadRequest, Unavailable
from gateway.router.config import HedgedRouting
from gateway.router.engine import Router
from gateway.router.hedging import HedgeBudget
from gateway.router.metrics import PrometheusRouterMetrics
from gateway.router.policies.hedged import Hedged
from gateway.router.stats import VariantView
from gateway.tensors import InferRequest, InferResponse
from tests.unit.router.fakes import (
    Behaviour,
    Fleet,
    ManualTimer,
    answers,
    drained,
    hangs,
    raises,
    request,
    router_for,
    settle,
    waits,
)

ROUTING = {"policy": "hedged", "default": "a", "order": ["b", "c"], "after_ms": 5, "budget": 1}


def hedged(**config: object) -> Hedged:
    cfg = HedgedRouting.model_validate(
        {"policy": "hedged", "default": "a", "order": ["b"], **config}
    )
    return Hedged(cfg, random.Random(0))


def measured(name: str, latencies: list[float]) -> VariantView:
    return VariantView(name, window=tuple(sorted(latencies)), samples=len(latencies))


def test_fixed_delay() -> None:
    plan = hedged(after_ms=7).choose([VariantView("a"), VariantView("b")])
    assert plan.hedge is not None
    assert (plan.primary, plan.hedge.variant, plan.hedge.after_s) == ("a", "b", 0.007)
    assert plan.fallbacks == ("b",)


def test_quantile_delay_once_known() -> None:
    policy = hedged(after="p90")
    assert policy.choose([measured("a", [0.001] * 10), VariantView("b")]).hedge is None
    plan = policy.choose([measured("a", [i / 1000 for i in range(100)]), VariantView("b")])
    assert plan.hedge is not None and plan.hedge.after_s == pytest.approx(0.090)


def test_fixed_delay_until_the_quantile_is_known() -> None:
    policy = hedged(after="p95", after_ms=20)
    plan = policy.choose([measured("a", [0.001] * 10), VariantView("b")])
    assert plan.hedge is not None and plan.hedge.after_s == 0.020


def test_no_hedge_without_a_second_variant_or_budget() -> None:
    assert hedged(after_ms=5).choose([VariantView("a")]).hedge is None
    assert hedged(after_ms=5, budget=0).choose([VariantView("a"), VariantView("b")]).hedge is None


def test_a_primary_that_cannot_serve_gives_way() -> None:
    plan = hedged(after_ms=5, order=["b", "c"]).choose([VariantView("b"), VariantView("c")])
    assert plan.hedge is not None
    assert (plan.primary, plan.hedge.variant) == ("b", "c")


def test_budget_tokens() -> None:
    budget = HedgeBudget(cap=2)
    assert not budget.spend()
    for _ in range(100):
        budget.deposit(0.5)
    assert budget.tokens == 2
    assert budget.spend() and budget.spend() and not budget.spend()


async def warmed(fleet: Fleet, timer: ManualTimer, **options: Any) -> Router:
    """A hedged router whose budget (1 token per primary call) holds one hedge: one request
    answered before its timer, then the fleet's and timer's records cleared."""
    router = router_for(ROUTING, fleet, sleep=timer.sleep, **options)
    behaviour = fleet.behaviours.pop("a", None)
    routed = await router.route(request(), fleet.clock() + 1)
    assert (routed.served_by, routed.hedged) == ("a", False)
    if behaviour is not None:
        fleet.behaviours["a"] = behaviour
    fleet.calls.clear()
    fleet.answered.clear()
    timer.started.clear()
    return router


async def test_the_hedge_answers_first_and_the_primary_is_cancelled() -> None:
    timer, fleet = ManualTimer(), Fleet(a=hangs())
    registry = CollectorRegistry()
    router = await warmed(fleet, timer, metrics=PrometheusRouterMetrics(registry))
    task = asyncio.create_task(router.route(request(), fleet.clock() + 1))
    await settle()
    assert fleet.called == ["a"] and timer.started == [0.005]
    timer.fire()
    routed = await task
    assert (routed.served_by, routed.hedged) == ("b", True)
    await drained(router)
    assert fleet.cancelled == ["a"]
    labels = {"model": "m", "primary": "a", "hedge": "b"}
    assert registry.get_sample_value("servegate_hedge_total", {**labels, "outcome": "won"}) == 1


async def test_an_answer_before_the_delay_sends_no_hedge() -> None:
    timer, fleet = ManualTimer(), Fleet()
    router = router_for(ROUTING, fleet, sleep=timer.sleep)
    for _ in range(3):
        routed = await router.route(request(), fleet.clock() + 1)
        assert (routed.served_by, routed.hedged) == ("a", False)
    assert fleet.called == ["a"] * 3
    assert len(timer.started) == 3
    await drained(router)


async def test_the_primary_answers_first_and_the_hedge_is_cancelled() -> None:
    gate = asyncio.Event()
    timer, fleet = ManualTimer(), Fleet(a=waits(gate), b=hangs())
    router = await warmed(fleet, timer)
    task = asyncio.create_task(router.route(request(), fleet.clock() + 1))
    await settle()
    timer.fire()
    await settle()
    assert fleet.called == ["a", "b"]
    gate.set()
    routed = await task
    assert (routed.served_by, routed.hedged) == ("a", True)
    await drained(router)
    assert fleet.cancelled == ["b"]


async def test_a_failed_call_waits_for_the_other() -> None:
    gate = asyncio.Event()
    timer = ManualTimer()
    fleet = Fleet(a=waits(gate, raises(lambda: Unavailable("a no"))), b=waits(gate))
    router = await warmed(fleet, timer)
    task = asyncio.create_task(router.route(request(), fleet.clock() + 1))
    await settle()
    timer.fire()
    await settle()
    gate.set()
    routed = await task
    assert routed.served_by == "b"
    assert fleet.cancelled == []


async def test_both_refuse_then_the_rest_of_the_order() -> None:
    gate = asyncio.Event()
    refuse = raises(lambda: Unavailable("no"))
    timer = ManualTimer()
    fleet = Fleet(a=waits(gate, refuse), b=waits(gate, refuse))
    router = await warmed(fleet, timer)
    task = asyncio.create_task(router.route(request(), fleet.clock() + 1))
    await settle()
    timer.fire()
    await settle()
    gate.set()
    routed = await task
    assert (routed.served_by, routed.refused) == ("c", ("a", "b"))
    assert fleet.called == ["a", "b", "c"]


async def test_a_client_error_answers_at_once_and_cancels_the_other() -> None:
    gate = asyncio.Event()
    timer = ManualTimer()
    fleet = Fleet(a=waits(gate, raises(lambda: BadRequest("bad"))), b=hangs())
    router = await warmed(fleet, timer)
    task = asyncio.create_task(router.route(request(), fleet.clock() + 1))
    await settle()
    timer.fire()
    await settle()
    gate.set()
    with pytest.raises(BadRequest):
        await task
    await drained(router)
    assert fleet.cancelled == ["b"]
    assert fleet.called == ["a", "b"]


async def test_a_cancelled_request_cancels_both_calls() -> None:
    timer, fleet = ManualTimer(), Fleet(a=hangs(), b=hangs())
    router = await warmed(fleet, timer)
    task = asyncio.create_task(router.route(request(), fleet.clock() + 1))
    await settle()
    timer.fire()
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await drained(router)
    assert sorted(fleet.cancelled) == ["a", "b"]


def steps(n: int) -> Behaviour:
    """Answers after `n` turns of the event loop (no time passes)."""

    async def behave(variant: str, req: InferRequest, deadline: float) -> InferResponse:
        for _ in range(n):
            await asyncio.sleep(0)
        return await answers()(variant, req, deadline)

    return behave


async def instant(seconds: float) -> None:
    await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.0, 1.0),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=40),
)
def test_hedges_stay_in_budget_and_losers_are_always_cancelled(
    budget: float, races: list[tuple[int, int]]
) -> None:
    async def scenario() -> None:
        fleet = Fleet()
        routing = {**ROUTING, "budget": budget}
        router = router_for(routing, fleet, variants=("a", "b"), sleep=instant)
        hedges = 0
        for primary_steps, hedge_steps in races:
            fleet.behaviours = {"a": steps(primary_steps), "b": steps(hedge_steps)}
            before, cancelled = len(fleet.calls), len(fleet.cancelled)
            routed = await router.route(request(), fleet.clock() + 1)
            sent = fleet.called[before:]
            hedges += sent.count("b")
            assert sent in (["a"], ["a", "b"])
            assert routed.hedged is (len(sent) == 2)
            assert routed.served_by in sent
            # Whatever had not finished when the answer came back gets cancelled.
            running = len(fleet.calls) - len(fleet.answered) - len(fleet.cancelled)
            await drained(router)
            assert len(fleet.cancelled) - cancelled == running
            assert len(fleet.calls) == len(fleet.answered) + len(fleet.cancelled)
        assert hedges <= budget * len(races) + 1e-9

    asyncio.run(scenario())
