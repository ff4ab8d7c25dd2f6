"""Supervisor: when to restart a runner that died, and when to give up (pure, clock given).

Exponential backoff with jitter, growing with the deaths seen in a sliding window; a
runner that dies `crash_loop_deaths` times within `crash_loop_window_s` is crash-looping
and is marked failed instead of restarted again.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    backoff_s: float = 0.25
    """Delay before the first restart (before jitter); it doubles with each recent death."""
    backoff_max_s: float = 10.0
    crash_loop_deaths: int = 5
    crash_loop_window_s: float = 60.0

    def delay(self, deaths: int, rng: random.Random) -> float:
        """Seconds to wait before restarting after the `deaths`-th recent death: half to
        all of min(cap, base * 2**(deaths-1)), so restarts of many runners spread out."""
        step = min(self.backoff_max_s, self.backoff_s * 2 ** max(deaths - 1, 0))
        return step * (0.5 + rng.random() / 2)


@dataclass(slots=True)
class DeathLog:
    """The deaths of one runner within the policy's window."""

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> int:
        """Notes a death at `now`; returns how many fall within the window."""
        self.times.append(now)
        while self.times and self.times[0] <= now - self.policy.crash_loop_window_s:
            self.times.popleft()
        return len(self.times)

    @property
    def crash_loop(self) -> bool:
        return len(self.times) >= self.policy.crash_loop_deaths
