"""Policy `pinned`: the default or a 503 that says why (today's behaviour, kept)."""

from __future__ import annotations

import random

import pytest

from gateway.errors import Unavailable
from gateway.router.config import PinnedRouting
from gateway.router.policies.pinned import Pinned
from gateway.router.stats import VariantView
from tests.unit.router.fakes import Fleet, request, router_for

POLICY = Pinned(PinnedRouting(default="a"), random.Random(0))


def views(*names: str) -> list[VariantView]:
    return [VariantView(n) for n in names]


def test_choose_is_the_default() -> None:
    plan = POLICY.choose(views("b", "a", "c"))
    assert (plan.primary, plan.fallbacks, plan.hedge, plan.mirror) == ("a", (), None, None)
    assert POLICY.key_header is None


def test_a_default_that_cannot_serve_is_unavailable() -> None:
    with pytest.raises(Unavailable, match=r"none of \['a'\]"):
        POLICY.choose(views("b", "c"))


async def test_routes_every_request_to_the_default() -> None:
    fleet = Fleet()
    router = router_for({"default": "b"}, fleet)
    for _ in range(5):
        routed = await router.route(request(), fleet.clock() + 1)
        assert (routed.served_by, routed.hedged, routed.mirrored) == ("b", False, ())
    assert fleet.called == ["b"] * 5


async def test_a_down_default_answers_503_with_its_reason_and_hint() -> None:
    fleet = Fleet()
    fleet.down.add("a")
    router = router_for({"default": "a"}, fleet)
    with pytest.raises(Unavailable, match="a is down") as caught:
        await router.route(request(), fleet.clock() + 1)
    assert caught.value.retry_after == 1.0
    assert fleet.calls == []
