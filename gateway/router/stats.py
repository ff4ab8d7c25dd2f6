"""Router stats: what the engine learns about each variant's calls, as snapshots for policies.

Per variant: an EWMA of answered calls' latency, recent latencies in a bounded window (for
quantiles such as the hedge delay's p95), calls outstanding, and failures in a recent time
window. The engine writes (`begin`/`end`); policies read immutable `VariantView`s, never the
live object, so a decision is a pure function of one snapshot. The clock is injected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Clock = Callable[[], float]
Outcome = Literal["ok", "failed", "cancelled", "neutral"]

QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True, slots=True)
class VariantView:
    """One variant as a policy sees it: immutable, taken at decision time."""

    name: str
    ewma_s: float | None = None
    """EWMA latency of answered calls; None before the first one."""
    outstanding: int = 0
    """Calls sent and not yet finished."""
    recent_errors: int = 0
    """Runner-side failures within the stats' error window."""
    samples: int = 0
    """Answered calls in `window` (at most the window size)."""
    window: tuple[float, ...] = ()
    """Recent answered latencies, sorted (may lag the newest few calls)."""

    def quantile(self, name: str, min_samples: int = 20) -> float | None:
        """`p50`/`p90`/`p95`/`p99` of recent latency; None until `min_samples` calls answered."""
        if len(self.window) < min_samples:
            return None
        q = QUANTILES[name]
        return self.window[min(len(self.window) - 1, int(q * len(self.window)))]


class VariantStats:
    """The live numbers of one variant, written by the engine around every call."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        alpha: float = 0.2,
        window: int = 200,
        error_window_s: float = 30.0,
        resort_every: int = 8,
    ) -> None:
        self.name = name
        self._clock = clock
        self._alpha = alpha
        self._latencies: deque[float] = deque(maxlen=window)
        self._errors: deque[float] = deque(maxlen=1024)
        self._error_window_s = error_window_s
        self._resort_every = resort_every
        self._sorted: tuple[float, ...] = ()
        self._unsorted = 0  # answers recorded since `_sorted` was built
        self.ewma_s: float | None = None
        self.outstanding = 0

    def begin(self) -> float:
        """A call starts; returns its start time, for `end`."""
        self.outstanding += 1
        return self._clock()

    def end(self, started: float, outcome: Outcome) -> None:
        """A call finished. `ok` records its latency; `cancelled` (a hedge's loser) records the
        time it had taken, a lower bound, so the tail the hedge cut off still counts in the
        quantiles; `failed` (runner-side) counts as a recent error; `neutral` (a client's
        error) records nothing."""
        self.outstanding -= 1
        now = self._clock()
        if outcome == "failed":
            self._errors.append(now)
        elif outcome != "neutral":
            took = max(0.0, now - started)
            ewma = self.ewma_s
            self.ewma_s = took if ewma is None else ewma + self._alpha * (took - ewma)
            self._latencies.append(took)
            self._unsorted += 1

    def recent_errors(self) -> int:
        horizon = self._clock() - self._error_window_s
        while self._errors and self._errors[0] < horizon:
            self._errors.popleft()
        return len(self._errors)

    def view(self) -> VariantView:
        # Sorting a full window on every snapshot would cost ~10 us a request; a quantile a
        # few answers stale is as good for a hedge delay. Short windows are sorted at once.
        if self._unsorted and (self._unsorted >= self._resort_every or len(self._sorted) < 64):
            self._sorted = tuple(sorted(self._latencies))
            self._unsorted = 0
        return VariantView(
            name=self.name,
            ewma_s=self.ewma_s,
            outstanding=self.outstanding,
            recent_errors=self.recent_errors(),
            samples=len(self._latencies),
            window=self._sorted,
        )


class Stats:
    """Every variant's VariantStats for one model (the router's and metadata's view)."""

    def __init__(
        self, clock: Clock, *, alpha: float = 0.2, window: int = 200, error_window_s: float = 30.0
    ) -> None:
        self._make = lambda name: VariantStats(
            name, clock=clock, alpha=alpha, window=window, error_window_s=error_window_s
        )
        self._variants: dict[str, VariantStats] = {}

    def variant(self, name: str) -> VariantStats:
        stats = self._variants.get(name)
        if stats is None:
            stats = self._variants[name] = self._make(name)
        return stats

    def snapshot(self, names: Iterable[str]) -> tuple[VariantView, ...]:
        """Views of `names`, in that order."""
        return tuple(self.variant(n).view() for n in names)
