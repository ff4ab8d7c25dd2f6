"""Load tests: the asyncio engine that issues requests open-loop (on a schedule) or closed-loop.

`open_loop` starts request i at `arrivals[i]` seconds whatever the server does — it
never waits for an answer before starting the next — and records every request's end
(loadtests/arrivals.py: Outcome). It keeps at most `max_inflight` requests open: one
due while that many are open is counted as *not sent* (a sign the generator, not the
server, was the limit; it should stay 0). Each request gets the deadline `deadline_s`
(the sender passes it on: gRPC's deadline, HTTP's timeout) and is abandoned, and
recorded as UNANSWERED, if nothing ends it by `deadline_s + grace_s` (measured while
the generator's own loop runs on time: see _Guard).

`closed_loop` is the classic loop of `concurrency` workers, each sending its next
request when the last one ends: used to measure capacity (the most the server serves).

A sender is any `async (index, timeout_s) -> code` (loadtests/senders.py); the clock
is injected. Requests start in lumps of whatever is due when the loop wakes, so a
generator that cannot keep up shows as `start_lag`, not as a silently lower rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from loadtests.arrivals import CLIENT_ERROR_PREFIX, TRANSPORT_PREFIX, UNANSWERED, Outcome, Run

Send = Callable[[int, float], Awaitable[str]]
Clock = Callable[[], float]

DEFAULT_MAX_INFLIGHT = 20_000


STALL_S = 0.05  # a guard that runs later than this found the event loop itself stalled


class _Guard:
    """Cancels the current request at `after_s`, unless the event loop was stalled then.

    When the generator is starved of CPU its loop runs late, and a request whose answer
    (or gRPC's own deadline) already came would be cancelled before the loop reads it:
    blaming the server for the generator. So a guard that runs more than STALL_S late
    looks again a little later, once the answers waiting behind it were read; once the
    load stops the loop is on time again, so every guard ends its request in the end."""

    def __init__(self, after_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.expired = False
        self._arm(self.loop.time() + after_s)

    def _arm(self, when: float) -> None:
        self._due = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        now = self.loop.time()
        if now - self._due > STALL_S:
            self._arm(now + STALL_S)
            return
        self.expired = True
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        self._handle.cancel()
        if self.expired and self.task is not None:
            self.task.uncancel()


async def _one(
    send: Send,
    index: int,
    scheduled_s: float,
    deadline_s: float,
    grace_s: float,
    t0: float,
    clock: Clock,
) -> Outcome:
    sent = clock() - t0
    guard = _Guard(deadline_s + grace_s)
    try:
        code = await send(index, deadline_s)
    except asyncio.CancelledError:
        if not guard.expired:
            raise
        code = UNANSWERED
    except OSError as exc:  # a transport error the sender did not map
        code = f"{TRANSPORT_PREFIX}{type(exc).__name__}"
    except Exception as exc:  # a client bug: still one outcome, so that the counts add up
        code = f"{CLIENT_ERROR_PREFIX}{type(exc).__name__}"
    finally:
        guard.close()
    if guard.expired:  # also when the sender turned the cancellation into a code of its own
        code = UNANSWERED  # (grpc.aio answers a cancelled call with CANCELLED)
    return Outcome(index, scheduled_s, sent, clock() - t0, code)


async def open_loop(
    send: Send,
    arrivals: np.ndarray,
    *,
    deadline_s: float,
    grace_s: float = 1.0,
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
    clock: Clock = time.perf_counter,
    stop: asyncio.Event | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    offered_rate: float | None = None,
    window_s: float | None = None,
    t0: float | None = None,
) -> Run:
    """Sends request i at `arrivals[i]` s from now; returns once every sent request ended.

    `window_s` is the span the schedule covers (its duration; default: up to the last
    start); `t0` the clock reading it counts from (default: now), for callers that time
    events of their own against the outcomes. `stop`, when set, ends the schedule early
    and cuts the window there; `on_outcome` sees each request as it ends (e.g. to set
    `stop`)."""
    outcomes: list[Outcome] = []
    pending: set[asyncio.Task[Outcome]] = set()
    not_sent = 0

    def done(task: asyncio.Task[Outcome]) -> None:
        pending.discard(task)
        if task.cancelled():
            return
        outcome = task.result()
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    t0 = clock() if t0 is None else t0
    window = window_s if window_s is not None else float(arrivals[-1]) if len(arrivals) else 0.0
    i, n = 0, len(arrivals)
    while i < n:
        if stop is not None and stop.is_set():
            window = clock() - t0
            break
        now = clock() - t0
        while i < n and arrivals[i] <= now:  # everything due: start it now, in order
            if len(pending) >= max_inflight:
                not_sent += 1
            else:
                task = asyncio.create_task(
                    _one(send, i, float(arrivals[i]), deadline_s, grace_s, t0, clock)
                )
                pending.add(task)
                task.add_done_callback(done)
            i += 1
        # sleep(0) still lets the started requests run when the next one is due at once
        await asyncio.sleep(max(0.0, float(arrivals[i]) - (clock() - t0)) if i < n else 0.0)
    while pending:
        await asyncio.wait(set(pending))
    return Run(outcomes, window, not_sent, offered_rate)


async def closed_loop(
    send: Send,
    concurrency: int,
    duration_s: float,
    *,
    deadline_s: float,
    grace_s: float = 1.0,
    clock: Clock = time.perf_counter,
) -> Run:
    """`concurrency` workers send back to back for `duration_s`; the window is the
    duration (requests still open at its end finish and count)."""
    outcomes: list[Outcome] = []
    t0 = clock()
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while clock() - t0 < duration_s:
            i = next(counter)
            now = clock() - t0
            outcomes.append(await _one(send, i, now, deadline_s, grace_s, t0, clock))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(outcomes, duration_s)
