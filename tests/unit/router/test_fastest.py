"""Policy `fastest`: lowest cost with exploration, or power of two choices on calls in flight."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import Unavailable
from gateway.router.config import FastestRouting
from gateway.router.policies.fastest import Fastest, cost
from gateway.router.stats import VariantView
from tests.unit.router.fakes import FakeClock, Fleet, request, router_for, takes


def fastest(seed: int = 0, **config: object) -> Fastest:
    cfg = FastestRouting.model_validate({"policy": "fastest", "default": "a", **config})
    return Fastest(cfg, random.Random(seed))


VIEWS = [
    VariantView("a", ewma_s=0.010),
    VariantView("b", ewma_s=0.002),
    VariantView("c", ewma_s=0.005),
]


def test_lowest_latency_without_exploration() -> None:
    assert fastest(explore=0).choose(VIEWS).primary == "b"


def test_calls_in_flight_raise_the_cost() -> None:
    queued = [VariantView("a", ewma_s=0.003), VariantView("b", ewma_s=0.002, outstanding=4)]
    assert cost(queued[1]) == pytest.approx(0.010)
    assert fastest(explore=0).choose(queued).primary == "a"


def test_an_unmeasured_variant_is_tried_first() -> None:
    views = [*VIEWS, VariantView("d")]
    assert fastest(explore=0).choose(views).primary == "d"


def test_exploration_sends_its_share_elsewhere() -> None:
    policy, n = fastest(explore=0.2), 5_000
    counts = Counter(policy.choose(VIEWS).primary for _ in range(n))
    assert abs(counts["b"] / n - 0.8) < 0.04
    assert counts["a"] > 0 and counts["c"] > 0


def test_only_the_configured_variants() -> None:
    policy = fastest(variants=["a", "c"], explore=0.5)
    assert {policy.choose(VIEWS).primary for _ in range(200)} <= {"a", "c"}
    with pytest.raises(Unavailable):
        policy.choose([VariantView("b")])


@given(st.lists(st.integers(0, 20), min_size=2, max_size=5), st.integers(0, 2**32))
def test_power_of_two_never_picks_the_single_busiest(outstanding: list[int], seed: int) -> None:
    views = [VariantView(f"v{i}", outstanding=n) for i, n in enumerate(outstanding)]
    policy = fastest(seed, by="outstanding")
    busiest = max(outstanding)
    picks = [policy.choose(views).primary for _ in range(30)]
    if outstanding.count(busiest) == 1:
        assert f"v{outstanding.index(busiest)}" not in picks
    assert set(picks) <= {v.name for v in views}


async def test_the_router_learns_which_is_fastest() -> None:
    clock = FakeClock()
    fleet = Fleet(clock, a=takes(clock, 0.050), b=takes(clock, 0.001), c=takes(clock, 0.020))
    router = router_for({"policy": "fastest", "default": "a", "explore": 0.05}, fleet)
    served = Counter([(await router.route(request(), 1e9)).served_by for _ in range(200)])
    assert served["b"] > 150
    assert set(served) == {"a", "b", "c"}  # each measured at least once
