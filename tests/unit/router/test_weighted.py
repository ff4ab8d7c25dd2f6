"""Policy `weighted`: draws converge to the percentages; a key always lands on one variant."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import Unavailable
from gateway.router.config import WeightedRouting
from gateway.router.policies.weighted import Weighted, rendezvous
from gateway.router.stats import VariantView
from tests.unit.router.fakes import Fleet, request, router_for

NAMES = ("a", "b", "c", "d")


def views(*names: str) -> list[VariantView]:
    return [VariantView(n) for n in names]


@st.composite
def percentages(draw: st.DrawFn) -> dict[str, float]:
    """2..4 variants with integer percentages summing to 100 (zeros allowed)."""
    n = draw(st.integers(2, 4))
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=n - 1, max_size=n - 1)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    return dict(zip(NAMES[:n], map(float, parts), strict=True))


def close_to(share: float, percent: float, n: int) -> bool:
    """Within six standard deviations of a binomial share (a flake once in ~10^9 runs)."""
    p = percent / 100
    return abs(share - p) <= 6 * (p * (1 - p) / n) ** 0.5 + 1 / n


def policy(weights: dict[str, float], seed: int = 0) -> Weighted:
    return Weighted(
        WeightedRouting(policy="weighted", default="a", weights=weights), random.Random(seed)
    )


@settings(max_examples=10, deadline=None)
@given(percentages(), st.integers(0, 2**32))
def test_unkeyed_draws_converge_to_the_percentages(weights: dict[str, float], seed: int) -> None:
    p, n = policy(weights, seed), 5_000
    up = views(*weights)
    counts = Counter(p.choose(up).primary for _ in range(n))
    for name, percent in weights.items():
        assert close_to(counts[name] / n, percent, n)
        if percent == 0:
            assert counts[name] == 0


@settings(max_examples=10, deadline=None)
@given(percentages())
def test_keyed_draws_converge_to_the_percentages(weights: dict[str, float]) -> None:
    p, n = policy(weights), 5_000
    up = views(*weights)
    counts = Counter(p.choose(up, key=f"user-{i}").primary for i in range(n))
    for name, percent in weights.items():
        assert close_to(counts[name] / n, percent, n)
        if percent == 0:
            assert counts[name] == 0


@given(percentages(), st.text(min_size=1), st.integers(0, 2**32), st.integers(0, 2**32))
def test_a_key_always_lands_on_the_same_variant(
    weights: dict[str, float], key: str, seed1: int, seed2: int
) -> None:
    up = views(*weights)
    first = policy(weights, seed1).choose(up, key=key).primary
    assert all(policy(weights, seed2).choose(up, key=key).primary == first for _ in range(3))
    assert weights[first] > 0


@given(percentages(), st.lists(st.text(min_size=1), min_size=1, max_size=50, unique=True))
def test_when_a_variant_cannot_serve_only_its_keys_move(
    weights: dict[str, float], keys: list[str]
) -> None:
    p = policy(weights)
    everyone = views(*weights)
    before = {k: p.choose(everyone, key=k).primary for k in keys}
    gone = max(weights, key=lambda n: weights[n])
    rest = [v for v in everyone if v.name != gone]
    if not any(weights[v.name] > 0 for v in rest):
        with pytest.raises(Unavailable):
            p.choose(rest, key=keys[0])
        return
    for key, was in before.items():
        now = p.choose(rest, key=key).primary
        assert now != gone
        if was != gone:
            assert now == was


def test_rendezvous_is_stable_across_processes() -> None:
    # Fixed expectations: the hash is blake2b, not Python's per-process hash().
    weights = [("a", 50.0), ("b", 50.0)]
    assert [rendezvous(f"k{i}", weights) for i in range(8)] == [
        rendezvous(f"k{i}", list(reversed(weights))) for i in range(8)
    ]
    assert len({rendezvous(f"k{i}", weights) for i in range(64)}) == 2


def test_no_weighted_variant_can_serve() -> None:
    with pytest.raises(Unavailable, match="weighted"):
        policy({"a": 100.0, "b": 0.0}).choose(views("b", "c"))


async def test_router_passes_the_key_and_names_its_header() -> None:
    fleet = Fleet()
    router = router_for(
        {"policy": "weighted", "default": "a", "weights": {"a": 50, "b": 50}}, fleet
    )
    assert router.key_header == "servegate-route-key"
    served = {(await router.route(request(), 1e9, key="alice")).served_by for _ in range(20)}
    assert len(served) == 1
