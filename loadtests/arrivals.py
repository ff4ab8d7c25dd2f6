"""Load tests: open-loop arrivals and their outcomes — the pure half of `loadtests.openloop`.

An open-loop generator starts requests on a schedule fixed before the run, whatever the
server does, as independent users' traffic arrives; a closed loop (Locust's users) waits
for each answer and so slows down with the server, hiding overload. This module holds
the schedule, the record of one request, and the figures a run is judged by. No I/O.

Every request ends in exactly one *kind*:

| kind | what happened |
|---|---|
| `ok` | answered 200 / OK (and, where checked, with the right answer) |
| `refused` | answered 429 / RESOURCE_EXHAUSTED: admission control said no |
| `error` | answered with any other status (503, UNAVAILABLE, 500, a wrong answer...) |
| `deadline` | its deadline passed first: 504 / DEADLINE_EXCEEDED or the client's own timeout |
| `transport` | no status at all: the connection failed or was reset |
| `unanswered` | nothing by deadline + grace: the generator gave up on it (must never happen) |
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

OK_CODES = frozenset({"OK", "200"})
REFUSED_CODES = frozenset({"RESOURCE_EXHAUSTED", "429"})
DEADLINE_CODES = frozenset({"DEADLINE_EXCEEDED", "504", "CLIENT_TIMEOUT"})
UNANSWERED = "UNANSWERED"
WRONG_ANSWER = "WRONG_ANSWER"
TRANSPORT_PREFIX = "transport:"  # e.g. "transport:ClientConnectorError"
CLIENT_ERROR_PREFIX = "client error:"  # the generator's own fault: an error, counted

KINDS = ("ok", "refused", "error", "deadline", "transport", "unanswered")
ANSWERED_KINDS = frozenset({"ok", "refused", "error"})


def kind_of(code: str) -> str:
    """The kind (see the module docstring) of a request that ended with `code`."""
    if code in OK_CODES:
        return "ok"
    if code in REFUSED_CODES:
        return "refused"
    if code in DEADLINE_CODES:
        return "deadline"
    if code == UNANSWERED:
        return "unanswered"
    if code.startswith(TRANSPORT_PREFIX):
        return "transport"
    return "error"


def schedule(
    rate: float, duration_s: float, *, poisson: bool = False, rng: random.Random | None = None
) -> np.ndarray:
    """Start times (s from the run's start) of every request of a run at `rate` per second.

    Uniform: exactly round(rate * duration) starts, 1/rate apart. Poisson: exponential
    gaps with mean 1/rate from `rng` (independent users), cut at `duration_s`."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be positive, got {rate} and {duration_s}")
    if not poisson:
        return np.arange(round(rate * duration_s), dtype=np.float64) / rate
    rng = rng or random.Random(0)
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate)
    return np.asarray(times, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it was due, sent and ended (s from the run's start), and its code."""

    index: int
    scheduled_s: float
    sent_s: float
    done_s: float
    code: str

    @property
    def kind(self) -> str:
        return kind_of(self.code)

    @property
    def latency_s(self) -> float:
        """From the send to the end: what the server (and the network) took."""
        return self.done_s - self.sent_s


@dataclass
class Run:
    """What one open- or closed-loop run produced."""

    outcomes: list[Outcome]
    window_s: float  # the span requests were due in (the schedule's length)
    not_sent: int = 0  # due while the in-flight bound was reached: never started
    offered_rate: float | None = None  # None: closed loop


PERCENTILES = (50.0, 90.0, 99.0)


def percentiles_ms(values_s: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99 and max, in ms, exact (numpy's linear interpolation); None when empty."""
    arr = np.asarray(values_s, dtype=np.float64) * 1000.0
    keys = [f"p{q:g}" for q in PERCENTILES] + ["max"]
    if arr.size == 0:
        return dict.fromkeys(keys)
    qs = [float(v) for v in np.percentile(arr, PERCENTILES)]
    return dict(zip(keys, [*qs, float(arr.max())], strict=True))


def summarize(run: Run) -> dict[str, Any]:
    """The figures of one run: counts that add up, rates, shares by code, latencies.

    `scheduled == sent + not_sent` and `sent == sum(kinds)`; shares are of `sent`;
    `sent_per_s` is the rate the sends really kept (below the offered rate when the
    generator fell behind), `admitted_per_s` the OK answers per second of the window.
    Latency percentiles are of `ok` requests only (admitted and answered); `start_lag`
    is how late the generator started requests against its schedule (its own limit);
    `latency_by_code_ms` says how fast each code came (a 429 should come at once)."""
    outs = run.outcomes
    sent = len(outs)
    kinds = Counter(o.kind for o in outs)
    by_code = Counter(o.code for o in outs)
    ok = [o for o in outs if o.kind == "ok"]
    window = run.window_s
    # the span sends actually took: longer than the window when the generator fell behind
    span = max(window, max((o.sent_s for o in outs), default=0.0))
    other = {c: n for c, n in sorted(by_code.items()) if kind_of(c) not in ("ok", "refused")}
    return {
        "offered_rate": run.offered_rate,
        "window_s": window,
        "scheduled": sent + run.not_sent,
        "sent": sent,
        "not_sent": run.not_sent,
        "sent_per_s": sent / span if span > 0 else 0.0,
        "kinds": {k: kinds.get(k, 0) for k in KINDS},
        "answered": sum(kinds.get(k, 0) for k in ANSWERED_KINDS),
        "unanswered": kinds.get("unanswered", 0),
        "ok": len(ok),
        "admitted_per_s": len(ok) / window if window > 0 else 0.0,
        "refused_share": _share(kinds.get("refused", 0), sent),
        "codes": dict(sorted(by_code.items())),
        "other_shares": {c: _share(n, sent) for c, n in other.items()},
        "latency_ms": percentiles_ms([o.latency_s for o in ok]),
        # how fast each code came: a refusal should come at once, a deadline at the deadline
        "latency_by_code_ms": {
            code: percentiles_ms([o.latency_s for o in outs if o.code == code])
            for code in sorted(by_code)
        },
        "latency_from_schedule_ms": percentiles_ms([o.done_s - o.scheduled_s for o in ok]),
        "start_lag_ms": percentiles_ms([max(0.0, o.sent_s - o.scheduled_s) for o in outs]),
    }


def _share(n: int, of: int) -> float:
    return n / of if of else 0.0
