"""Restart policy: backoff grows with recent deaths, jitter stays in bounds, crash loops."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from gateway.supervisor.restarts import DeathLog, RestartPolicy


@given(st.integers(1, 40), st.integers(0, 2**32))
def test_delay_is_half_to_all_of_a_capped_doubling(deaths: int, seed: int) -> None:
    policy = RestartPolicy(backoff_s=0.25, backoff_max_s=10.0)
    step = min(10.0, 0.25 * 2 ** (deaths - 1))
    delay = policy.delay(deaths, random.Random(seed))
    assert step / 2 <= delay <= step


def test_delays_spread_out_under_jitter() -> None:
    policy = RestartPolicy()
    rng = random.Random(7)
    delays = {round(policy.delay(3, rng), 6) for _ in range(20)}
    assert len(delays) > 10


def test_five_deaths_in_a_minute_is_a_crash_loop_but_spread_out_deaths_are_not() -> None:
    log = DeathLog(RestartPolicy(crash_loop_deaths=5, crash_loop_window_s=60))
    for t in (0, 20, 40, 59):
        log.record(t)
    assert not log.crash_loop
    assert log.record(59.5) == 5 and log.crash_loop

    spread = DeathLog(RestartPolicy(crash_loop_deaths=5, crash_loop_window_s=60))
    for t in range(0, 600, 30):  # one death every 30 s, for ten minutes
        assert spread.record(t) <= 2
    assert not spread.crash_loop
