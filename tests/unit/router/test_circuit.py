"""Circuit breakers over a FakeClock: open on a streak or a rate, half-open probes, close."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    GatewayError,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    Unavailable,
    Unreachable,
)
from gateway.router.circuit import CircuitBreaker, Circuits, CircuitState, is_runner_failure
from gateway.router.config import CircuitConfig
from tests.unit.router.fakes import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def breaker(**config: float) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(
        CircuitConfig(**config),  # type: ignore[arg-type]
        clock=clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    return b, clock, changes


def outcome(b: CircuitBreaker, *, ok: bool) -> None:
    permit = b.acquire()
    assert permit is not None
    b.record(permit, ok=ok, failed=not ok)


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (Unavailable("x"), True),
        (Unreachable("x"), True),
        (DeadlineExceeded("x"), True),
        (Overloaded("x"), True),
        (GatewayError("x"), True),
        (RuntimeError("x"), True),
        (BadRequest("x"), False),
        (ModelNotFound("x"), False),
        (PayloadTooLarge("x"), False),
        (asyncio.CancelledError(), False),
    ],
)
def test_only_runner_side_failures_count(error: BaseException, counts: bool) -> None:
    assert is_runner_failure(error) is counts


def test_opens_after_consecutive_failures_and_refuses() -> None:
    b, _, changes = breaker(consecutive_failures=3)
    for _ in range(2):
        outcome(b, ok=False)
    assert b.state is CLOSED
    outcome(b, ok=False)
    assert b.state is OPEN
    assert (b.can_pass(), b.acquire()) == (False, None)
    assert changes == [("CLOSED", "OPEN")]


def test_a_success_breaks_the_streak() -> None:
    b, _, _ = breaker(consecutive_failures=3, min_calls=100)
    for ok in (False, False, True, False, False):
        outcome(b, ok=ok)
    assert b.state is CLOSED


def test_opens_on_failure_rate_over_the_window() -> None:
    b, _, _ = breaker(consecutive_failures=100, failure_rate=0.5, min_calls=10, window_s=10)
    for i in range(9):
        outcome(b, ok=i % 2 == 0)  # 4 of 9 failed: under min_calls anyway
    assert b.state is CLOSED
    outcome(b, ok=False)  # 5 of 10
    assert b.state is OPEN


def test_old_calls_leave_the_rate_window() -> None:
    b, clock, _ = breaker(consecutive_failures=100, failure_rate=0.5, min_calls=4, window_s=10)
    for _ in range(3):
        outcome(b, ok=False)  # 3 calls: under min_calls
    clock.advance(11)
    for _ in range(3):
        outcome(b, ok=True)
    outcome(b, ok=False)  # 1 of 4 in the window
    assert b.state is CLOSED


def test_half_open_after_cooldown_lets_limited_probes_and_closes_on_success() -> None:
    b, clock, changes = breaker(consecutive_failures=1, cooldown_s=5, half_open_probes=2)
    outcome(b, ok=False)
    clock.advance(4.9)
    assert b.state is OPEN
    assert b.retry_after() == pytest.approx(0.1)
    clock.advance(0.1)
    assert b.state is HALF_OPEN
    first, second = b.acquire(), b.acquire()
    assert first is not None and second is not None and first.probe
    assert b.acquire() is None  # no more than half_open_probes at once
    b.record(first, ok=True, failed=False)
    assert b.state is CLOSED
    b.record(second, ok=False, failed=True)  # a probe from before the close: ignored
    assert b.state is CLOSED
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_a_failed_probe_opens_again_for_a_full_cooldown() -> None:
    b, clock, _ = breaker(consecutive_failures=1, cooldown_s=5)
    outcome(b, ok=False)
    clock.advance(5)
    outcome(b, ok=False)
    assert b.state is OPEN
    clock.advance(4)
    assert b.state is OPEN
    clock.advance(1)
    assert b.state is HALF_OPEN


def test_a_neutral_probe_gives_its_slot_back() -> None:
    b, clock, _ = breaker(consecutive_failures=1, cooldown_s=1, half_open_probes=1)
    outcome(b, ok=False)
    clock.advance(1)
    permit = b.acquire()
    assert permit is not None and b.acquire() is None
    b.record(permit, ok=False, failed=False)  # cancelled, or a client's 400
    assert b.state is HALF_OPEN and b.can_pass()


def test_outcomes_of_calls_let_through_before_it_opened_are_ignored() -> None:
    b, _, _ = breaker(consecutive_failures=1, cooldown_s=1)
    early = b.acquire()
    assert early is not None
    outcome(b, ok=False)
    b.record(early, ok=True, failed=False)
    assert b.state is OPEN


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 3)), max_size=60))
def test_never_passes_a_call_while_open(steps: list[tuple[bool, float]]) -> None:
    b, clock, _ = breaker(consecutive_failures=2, cooldown_s=2, half_open_probes=1)
    for ok, wait in steps:
        clock.advance(wait)
        state = b.state
        permit = b.acquire()
        if state is OPEN:
            assert permit is None
        if permit is not None:
            b.record(permit, ok=ok, failed=not ok)


def test_circuits_hold_one_breaker_per_variant() -> None:
    clock = FakeClock()
    seen: list[tuple[str, str]] = []
    circuits = Circuits(
        CircuitConfig(consecutive_failures=1),
        clock=clock,
        on_change=lambda v, old, new: seen.append((v, new.value)),
    )
    outcome(circuits.breaker("a"), ok=False)
    assert circuits.breaker("a") is circuits.breaker("a")
    assert circuits.states() == {"a": OPEN}
    assert circuits.breaker("b").state is CLOSED
    assert seen == [("a", "OPEN")]


def test_reset_closes_at_once_and_forgets_the_old_processs_calls() -> None:
    b, _, changes = breaker(consecutive_failures=2)
    in_flight = b.acquire()  # sent to the old process before it died
    assert in_flight is not None
    outcome(b, ok=False)
    outcome(b, ok=False)
    assert b.state is OPEN
    b.reset()  # the runner is a new process now
    assert b.state is CLOSED and b.can_pass()
    b.record(in_flight, ok=False, failed=True)  # its failure arrives late: not counted
    outcome(b, ok=False)
    assert b.state is CLOSED  # one failure of the new process, not a streak of two
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "CLOSED")]
