"""VariantStats over a FakeClock: EWMA, quantiles, outstanding calls, recent errors, snapshots."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.router.stats import Stats, VariantStats, VariantView
from tests.unit.router.fakes import FakeClock


def call(stats: VariantStats, clock: FakeClock, seconds: float, outcome: str = "ok") -> None:
    started = stats.begin()
    clock.advance(seconds)
    stats.end(started, outcome)  # type: ignore[arg-type]


def test_ewma_follows_answered_latency() -> None:
    clock = FakeClock()
    stats = VariantStats("a", clock=clock, alpha=0.5)
    assert stats.view().ewma_s is None
    call(stats, clock, 0.010)
    assert stats.view().ewma_s == pytest.approx(0.010)
    call(stats, clock, 0.030)
    assert stats.view().ewma_s == pytest.approx(0.020)


def test_outstanding_counts_calls_in_flight() -> None:
    clock = FakeClock()
    stats = VariantStats("a", clock=clock)
    first, second = stats.begin(), stats.begin()
    assert stats.view().outstanding == 2
    stats.end(first, "ok")
    stats.end(second, "neutral")
    assert stats.view().outstanding == 0


def test_failures_are_recent_errors_and_expire() -> None:
    clock = FakeClock()
    stats = VariantStats("a", clock=clock, error_window_s=10)
    call(stats, clock, 0.001, "failed")
    call(stats, clock, 0.001, "failed")
    call(stats, clock, 0.001, "neutral")
    view = stats.view()
    assert (view.recent_errors, view.samples, view.ewma_s) == (2, 0, None)
    clock.advance(11)
    assert stats.view().recent_errors == 0


def test_a_cancelled_call_records_its_time_so_far() -> None:
    clock = FakeClock()
    stats = VariantStats("a", clock=clock)
    call(stats, clock, 0.5, "cancelled")
    assert stats.view().window == (0.5,)


def test_quantile_needs_enough_samples() -> None:
    clock = FakeClock()
    stats = VariantStats("a", clock=clock)
    for i in range(19):
        call(stats, clock, i / 1000)
    assert stats.view().quantile("p95") is None
    call(stats, clock, 0.019)
    assert stats.view().quantile("p95") == pytest.approx(0.019)
    assert stats.view().quantile("p50") == pytest.approx(0.010)


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=400))
def test_window_is_bounded_and_quantiles_are_samples(latencies: list[float]) -> None:
    clock = FakeClock()
    stats = VariantStats("a", clock=clock, window=100)
    for seconds in latencies:
        call(stats, clock, seconds)
    view = stats.view()
    assert view.samples == min(len(latencies), 100)
    assert list(view.window) == sorted(view.window)
    assert len(view.window) <= 100
    p95 = view.quantile("p95", min_samples=1)
    assert p95 is not None
    assert min(view.window) <= p95 <= max(view.window)


def test_views_are_immutable_snapshots() -> None:
    clock = FakeClock()
    stats = Stats(clock)
    call(stats.variant("a"), clock, 0.01)
    (before,) = stats.snapshot(["a"])
    call(stats.variant("a"), clock, 1.0)
    assert before.ewma_s == pytest.approx(0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.outstanding = 3  # type: ignore[misc]
    assert [v.name for v in stats.snapshot(["b", "a"])] == ["b", "a"]
    assert isinstance(before, VariantView)
