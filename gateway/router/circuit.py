"""Router circuit breakers: one per variant, so a failing runner is skipped, then probed back.

CLOSED: calls pass; `consecutive_failures` runner-side failures in a row, or a failure rate
over `window_s` (with at least `min_calls`), open it. OPEN: calls are refused without being
sent (CircuitOpen, a 503) for `cooldown_s`; then HALF_OPEN: up to `half_open_probes` calls
pass at once; the first success closes it, a failure opens it again. Only the runner's side
counts (503, 504, 429, 500); a client's 4xx, a cancelled call (a hedge's loser) never does.
Outcomes of calls let through before the circuit opened are ignored once it has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.errors import GatewayError, Overloaded, Unavailable
from gateway.router.config import CircuitConfig

Clock = Callable[[], float]


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitOpen(Unavailable):
    """A variant's circuit is open: the call was refused without reaching its runner."""


def is_runner_failure(exc: BaseException) -> bool:
    """True for failures on the runner's side: 5xx, 429, and anything unforeseen (a 500).
    A client's errors (400, 404, 413, ...) say nothing about the runner."""
    if isinstance(exc, Overloaded):
        return True
    if isinstance(exc, GatewayError):
        return exc.http_status >= 500
    return isinstance(exc, Exception)  # not CancelledError, KeyboardInterrupt, ...


@dataclass(frozen=True, slots=True)
class Permit:
    """What `acquire` hands out; given back to `record`. `probe`: a half-open probe call."""

    probe: bool
    epoch: int


class CircuitBreaker:
    """One variant's breaker; `on_change(old, new)` hears every transition."""

    def __init__(
        self,
        config: CircuitConfig,
        *,
        clock: Clock,
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._epoch = 0  # bumped on every transition: stale permits are ignored
        self._opened_at = 0.0
        self._probes = 0
        self._streak = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._failures_in_window = 0

    @property
    def state(self) -> CircuitState:
        """The state now (an open circuit whose cooldown ended reads HALF_OPEN)."""
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.config.cooldown_s
        ):
            self._move(CircuitState.HALF_OPEN)
        return self._state

    def can_pass(self) -> bool:
        """Whether a call would be let through now (no side effect)."""
        state = self.state
        if state is CircuitState.HALF_OPEN:
            return self._probes < self.config.half_open_probes
        return state is CircuitState.CLOSED

    def retry_after(self) -> float:
        """Seconds until an open circuit lets probes through (0 when it is not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.cooldown_s - self._clock())

    def acquire(self) -> Permit | None:
        """Lets one call through (a permit), or None when the circuit refuses it."""
        if not self.can_pass():
            return None
        probe = self._state is CircuitState.HALF_OPEN
        if probe:
            self._probes += 1
        return Permit(probe=probe, epoch=self._epoch)

    def record(self, permit: Permit, *, ok: bool, failed: bool) -> None:
        """A call's outcome: `ok`, a runner-side `failed`, or neither (client error, cancelled)."""
        if permit.epoch != self._epoch:
            return  # let through before the last transition: says nothing about now
        if permit.probe:
            self._probes -= 1
            if ok:
                self._move(CircuitState.CLOSED)
            elif failed:
                self._open()
            return
        if not (ok or failed):
            return
        now = self._clock()
        self._window.append((now, failed))
        self._failures_in_window += failed
        self._prune(now)
        self._streak = self._streak + 1 if failed else 0
        calls = len(self._window)
        if self._streak >= self.config.consecutive_failures or (
            calls >= self.config.min_calls
            and self._failures_in_window >= self.config.failure_rate * calls
        ):
            self._open()

    def reset(self) -> None:
        """Closed, with no history: the variant's runner is a new process (restarted, or a
        standby took over), so the old one's failures say nothing about it; calls still on
        their way to the old one are not counted either."""
        self._move(CircuitState.CLOSED)

    def _prune(self, now: float) -> None:
        horizon = now - self.config.window_s
        while self._window and self._window[0][0] < horizon:
            _, failed = self._window.popleft()
            self._failures_in_window -= failed

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN)

    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        self._epoch += 1
        self._probes = 0
        self._streak = 0
        self._window.clear()
        self._failures_in_window = 0
        if old is not new and self._on_change is not None:
            self._on_change(old, new)


class Circuits:
    """Every variant's breaker for one model; `on_change(variant, old, new)` hears transitions."""

    def __init__(
        self,
        config: CircuitConfig | None = None,
        *,
        clock: Clock,
        on_change: Callable[[str, CircuitState, CircuitState], None] | None = None,
    ) -> None:
        self.config = config if config is not None else CircuitConfig()
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, variant: str) -> CircuitBreaker:
        breaker = self._breakers.get(variant)
        if breaker is None:
            hook = self._on_change

            def told(old: CircuitState, new: CircuitState) -> None:
                if hook is not None:
                    hook(variant, old, new)

            breaker = self._breakers[variant] = CircuitBreaker(
                self.config, clock=self._clock, on_change=told
            )
        return breaker

    def states(self) -> Mapping[str, CircuitState]:
        """Each known variant's state now (for metadata and the metrics gauge)."""
        return {name: b.state for name, b in self._breakers.items()}
