"""Policy `failover` and the engine's fallbacks: refusals move on, within the deadline only,
and a client's error is never sent twice."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    GatewayError,
    ModelNotFound,
    Overloaded,
    Unavailable,
)
from gateway.router.circuit import CircuitOpen
from gateway.router.config import FailoverRouting
from gateway.router.engine import Router
from gateway.router.metrics import PrometheusRouterMetrics
from gateway.router.policies.failover import Failover
from gateway.router.stats import VariantView
from tests.unit.router.fakes import Behaviour, FakeClock, Fleet, answers, raises, request, takes
from tests.unit.router.fakes import router_for as _router_for

ROUTING = {"policy": "failover", "default": "a", "order": ["b", "c"]}


def router_for(fleet: Fleet, **options: Any) -> Router:
    return _router_for(ROUTING, fleet, **options)


def test_choose_orders_the_variants_that_can_serve() -> None:
    policy = Failover(
        FailoverRouting(policy="failover", default="a", order=("b", "c")), random.Random(0)
    )
    assert policy.choose([VariantView(n) for n in "cba"]).fallbacks == ("b", "c")
    plan = policy.choose([VariantView("c"), VariantView("b")])
    assert (plan.primary, plan.fallbacks) == ("b", ("c",))
    with pytest.raises(Unavailable):
        policy.choose([VariantView("d")])


@pytest.mark.parametrize("refusal", [Unavailable, Overloaded, CircuitOpen])
async def test_a_refusal_moves_to_the_next(refusal: type[GatewayError]) -> None:
    fleet = Fleet(a=raises(lambda: refusal("no")))
    registry = CollectorRegistry()
    router = router_for(fleet, metrics=PrometheusRouterMetrics(registry))
    routed = await router.route(request(), fleet.clock() + 1)
    assert (routed.served_by, routed.refused) == ("b", ("a",))
    assert fleet.called == ["a", "b"]
    labels = {"model": "m", "source": "a", "target": "b", "reason": refusal.__name__}
    assert registry.get_sample_value("servegate_failover_total", labels) == 1


@pytest.mark.parametrize("error", [BadRequest, ModelNotFound, GatewayError, DeadlineExceeded])
async def test_no_failover_on_anything_but_a_refusal(error: type[GatewayError]) -> None:
    fleet = Fleet(a=raises(lambda: error("no")))
    router = router_for(fleet)
    with pytest.raises(error):
        await router.route(request(), fleet.clock() + 1)
    assert fleet.called == ["a"]


async def test_all_refuse_raises_the_last_refusal() -> None:
    fleet = Fleet(**{n: raises(lambda n=n: Unavailable(f"{n} no")) for n in "abc"})
    with pytest.raises(Unavailable, match="c no"):
        await router_for(fleet).route(request(), fleet.clock() + 1)
    assert fleet.called == ["a", "b", "c"]


async def test_a_variant_that_went_down_since_the_plan_is_skipped() -> None:
    fleet = Fleet()

    async def a_fails_and_b_goes_down(variant: str, req: object, deadline: float) -> object:
        fleet.down.add("b")
        raise Unavailable("a no")

    fleet.behaviours["a"] = a_fails_and_b_goes_down  # type: ignore[assignment]
    routed = await router_for(fleet).route(request(), fleet.clock() + 1)
    assert routed.served_by == "c"
    assert fleet.called == ["a", "c"]


async def test_no_fallback_once_the_deadline_passed() -> None:
    clock = FakeClock()
    fleet = Fleet(clock, a=takes(clock, 0.3, raises(lambda: Unavailable("a no"))))
    with pytest.raises(DeadlineExceeded, match="deadline passed"):
        await router_for(fleet).route(request(), clock() + 0.3)
    assert fleet.called == ["a"]


OUTCOMES = st.sampled_from(["ok", "unavailable", "overloaded", "bad_request", "internal"])


def behaviour(clock: FakeClock, seconds: float, outcome: str) -> Behaviour:
    then = {
        "ok": answers(),
        "unavailable": raises(lambda: Unavailable("no")),
        "overloaded": raises(lambda: Overloaded("busy")),
        "bad_request": raises(lambda: BadRequest("bad")),
        "internal": raises(lambda: GatewayError("boom")),
    }[outcome]
    return takes(clock, seconds, then)


@given(
    st.lists(st.tuples(st.floats(0, 0.5), OUTCOMES), min_size=3, max_size=3),
    st.floats(0.01, 1.0),
)
def test_failover_never_passes_the_deadline_or_retries_a_client_error(
    script: list[tuple[float, str]], timeout: float
) -> None:
    clock = FakeClock()
    fleet = Fleet(
        clock, **{n: behaviour(clock, *step) for n, step in zip("abc", script, strict=True)}
    )
    deadline = clock() + timeout
    outcome: object
    try:
        outcome = asyncio.run(router_for(fleet).route(request(), deadline))
    except GatewayError as exc:
        outcome = exc
    # Every call started before the deadline, in order, each variant once.
    assert all(started < deadline for _, started in fleet.calls[1:])
    assert fleet.called == list("abc"[: len(fleet.calls)])
    assert clock() <= deadline
    # Only refusals moved on: whatever came before the last call refused.
    by_name = dict(zip("abc", script, strict=True))
    for name in fleet.called[:-1]:
        assert by_name[name][1] in ("unavailable", "overloaded")
    last = fleet.called[-1]
    if by_name[last][1] == "bad_request" and clock() < deadline:
        assert isinstance(outcome, BadRequest)
    if not isinstance(outcome, GatewayError):
        assert outcome.served_by == last  # type: ignore[attr-defined]
