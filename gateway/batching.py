"""Batching: one Batcher per variant coalesces concurrent requests into runner calls.

Policy (measured in ../shared/notes/PEERS.md): requests that can share a call (equal
`batch_key`) form a lane, and each lane has one batch in flight; a request that finds its
lane idle is sent at once, so a lone client pays no window; requests that arrive while
the lane's batch is in flight wait, and all of them (up to `max_batch_size` rows) go
together when it returns. Under load a batch also waits (up to `adaptive_delay_ms`) for
as many requests as recent batches had: a gateway busy on one core hands requests to the
batcher one at a time, so without it most calls would carry one or two rows, and each
call costs CPU in the gateway and the runner. Recent batches of one (a lone client) mean
no wait at all. Lanes never wait on each other: requests that cannot be stacked
(other shapes, other runner parameters) do not serialize behind one another. A batch is
sent with the latest of its members' deadlines, so a member with a short deadline fails
alone (504 at its own deadline), never the members batched with it. A full queue refuses
at once (Overloaded, 429 / RESOURCE_EXHAUSTED) instead of making callers wait for space;
expired requests are dropped before they are sent. `take_batch` holds the rules and is
pure; `Batcher` and its lanes are the thin engine around it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from gateway.config import BatchingConfig
from gateway.errors import DeadlineExceeded, GatewayError, Overloaded, Unavailable
from gateway.tensors import InferRequest, InferResponse, Tensor

Send = Callable[[InferRequest, float], Awaitable[InferResponse]]
Clock = Callable[[], float]
Observe = Callable[[str, int, list[float], float, float, float], None]
"""After each runner call: (model version, rows, each member's seconds queued, seconds
to stack, seconds in the call, seconds to split) -- the statistics extension's timing."""


def batch_key(request: InferRequest) -> Hashable:
    """Requests with equal keys can be stacked along dim 0 and answered by one call.

    Only what reaches the runner counts: the dataplane has already dropped the
    parameters the runner does not read and the output selection it applies itself.
    """
    return (
        request.model_version,
        tuple((t.name, t.datatype, t.shape[1:]) for t in request.inputs),
        tuple(o.name for o in request.outputs),
        tuple(sorted(request.parameters.items())),
    )


@dataclass(eq=False)
class Pending:
    """A request waiting in a batcher's queue."""

    request: InferRequest
    deadline: float
    rows: int
    key: Hashable
    future: asyncio.Future[InferResponse] = field(repr=False)
    queued_at: float = 0.0


def expected_company(members: float) -> int:
    """How many requests a batch waits for, from the recent mean of requests per batch:
    none beyond itself until that mean reaches 1.5."""
    return max(1, int(members + 0.5))


def take_batch(
    queue: deque[Pending], now: float, max_rows: int
) -> tuple[list[Pending], list[Pending]]:
    """Pops (batch, expired) from the head of `queue` (one lane: every key equal).

    Expired or abandoned entries at the head are popped into `expired` (abandoned ones
    are simply dropped); then entries while their rows fit in `max_rows` (a single larger
    request goes alone). Order is kept; nothing expired is ever in the batch.
    """
    batch: list[Pending] = []
    expired: list[Pending] = []
    rows = 0
    while queue:
        head = queue[0]
        if head.future.done():
            queue.popleft()
            continue
        if head.deadline <= now:
            expired.append(queue.popleft())
            continue
        if batch and rows + head.rows > max_rows:
            break
        batch.append(queue.popleft())
        rows += head.rows
    return batch, expired


def batch_deadline(batch: list[Pending]) -> float:
    """The deadline a batch is sent with: its latest member's, so that no member fails
    because another one gave up sooner."""
    return max(p.deadline for p in batch)


def stack(requests: list[InferRequest]) -> InferRequest:
    """One request whose inputs are the members' inputs concatenated along dim 0."""
    if len(requests) == 1:
        return requests[0]
    head = requests[0]
    inputs = tuple(
        Tensor(t.name, t.datatype, np.concatenate([r.inputs[i].data for r in requests]))
        for i, t in enumerate(head.inputs)
    )
    return InferRequest(
        model_name=head.model_name, inputs=inputs, model_version=head.model_version,
        outputs=head.outputs, parameters=head.parameters,
    )  # fmt: skip


def split(response: InferResponse, rows: list[int]) -> list[InferResponse]:
    """The inverse of `stack` on the answer: each member gets its own rows of every output."""
    if len(rows) == 1:
        return [response]
    total = sum(rows)
    for t in response.outputs:
        if not t.shape or t.shape[0] != total:
            raise GatewayError(
                f"output '{t.name}' has shape {list(t.shape)}: cannot split {total} batched rows"
            )
    out = []
    start = 0
    for n in rows:
        outputs = tuple(
            Tensor(t.name, t.datatype, t.data[start : start + n]) for t in response.outputs
        )
        out.append(InferResponse(response.model_name, outputs, response.model_version))
        start += n
    return out


def _fail(batch: list[Pending], exc: BaseException) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(exc)


class _Lane:
    """The queue of one batch key and the task that sends it, one batch at a time."""

    def __init__(self) -> None:
        self.queue: deque[Pending] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class Batcher:
    """Coalesces requests for one variant; one batch in flight per lane."""

    def __init__(
        self,
        name: str,
        cfg: BatchingConfig,
        send: Send,
        *,
        clock: Clock,
        observe: Observe | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self._send = send
        self._clock = clock
        self._observe = observe
        self._lanes: dict[Hashable, _Lane] = {}
        self._batch_seconds = 0.0  # EWMA of one runner call, for the retry hint
        self._members = 1.0  # EWMA of requests per batch: the company a batch can expect
        self._closed = False

    @property
    def queued(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    def _live(self) -> int:
        """Queued entries whose callers still wait (the ones that gave up are dropped)."""
        for lane in self._lanes.values():
            lane.queue = deque(p for p in lane.queue if not p.future.done())
        return self.queued

    async def submit(self, request: InferRequest, deadline: float) -> InferResponse:
        """Queues `request` and waits for its rows of a batched answer, until `deadline`."""
        if self._closed:
            raise Unavailable(f"variant '{self.name}' is shutting down")
        if self.queued >= self.cfg.max_queue and self._live() >= self.cfg.max_queue:
            waiting = self.queued
            wait = self._batch_seconds * waiting / self.cfg.max_batch_size
            raise Overloaded(
                f"variant '{self.name}': {waiting} requests queued (max_queue "
                f"{self.cfg.max_queue})",
                retry_after=max(wait, 0.05),
            )
        now = self._clock()
        if deadline <= now:
            raise DeadlineExceeded(f"variant '{self.name}': deadline passed before it was queued")
        rows = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        key = batch_key(request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InferResponse] = loop.create_future()
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queue.append(Pending(request, deadline, rows, key, future, now))
        if lane.task is None:
            lane.task = asyncio.create_task(self._run(key, lane), name=f"batcher {self.name}")
        lane.wakeup.set()
        # At the deadline the future fails, which also takes it out of any batch not yet
        # sent (a timer, not asyncio.wait_for: that costs a second future and a task wake-up
        # per request). A caller that is cancelled cancels the future the same way.
        timer = loop.call_later(deadline - now, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[InferResponse]) -> None:
        if not future.done():
            future.set_exception(
                DeadlineExceeded(
                    f"variant '{self.name}': deadline passed before the runner answered"
                )
            )

    async def _run(self, key: Hashable, lane: _Lane) -> None:
        """Sends the lane's batches until it is empty, then retires the lane."""
        while lane.queue:
            if self.cfg.max_delay_ms > 0:
                await self._gather_company(lane)
            elif self.cfg.adaptive_delay_ms > 0:
                await self._await_usual_company(lane)
            batch, expired = take_batch(lane.queue, self._clock(), self.cfg.max_batch_size)
            for p in expired:
                if not p.future.done():
                    p.future.set_exception(
                        DeadlineExceeded(f"variant '{self.name}': deadline passed in the queue")
                    )
            if batch:
                self._members += 0.2 * (len(batch) - self._members)
                await self._flush(batch)
        del self._lanes[key]

    async def _await_usual_company(self, lane: _Lane) -> None:
        """Waits until the lane holds as many requests as batches lately had (or a full
        batch), up to adaptive_delay_ms and never more than half the time the earliest
        member has left after a call."""
        expect = expected_company(self._members)
        if len(lane.queue) >= expect:
            return
        left = min(p.deadline for p in lane.queue) - self._clock() - self._batch_seconds
        wait = min(self.cfg.adaptive_delay_ms / 1000, left / 2)
        if wait <= 0:
            return
        # A flag, not a clock comparison: the loop's timers may fire a little before the
        # clock says the time is up, and a wait resumed then would sleep with no timer.
        over = False

        def time_up() -> None:
            nonlocal over
            over = True
            lane.wakeup.set()

        timer = asyncio.get_running_loop().call_later(wait, time_up)
        try:
            while (
                not over
                and len(lane.queue) < expect
                and sum(p.rows for p in lane.queue) < self.cfg.max_batch_size
            ):
                lane.wakeup.clear()
                await lane.wakeup.wait()
        finally:
            timer.cancel()

    async def _gather_company(self, lane: _Lane) -> None:
        """Waits up to max_delay_ms for the lane to fill to a full batch."""
        until = self._clock() + self.cfg.max_delay_ms / 1000
        while sum(p.rows for p in lane.queue) < self.cfg.max_batch_size:
            left = until - self._clock()
            if left <= 0:
                return
            lane.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wakeup.wait(), left)

    async def _flush(self, batch: list[Pending]) -> None:
        started = self._clock()
        try:
            merged = stack([p.request for p in batch])
            stacked = self._clock()
            response = await self._send(merged, batch_deadline(batch))
            answered = self._clock()
            parts = split(response, [p.rows for p in batch])
            if self._observe is not None:
                self._observe(
                    merged.model_version,
                    sum(p.rows for p in batch),
                    [started - p.queued_at for p in batch],
                    stacked - started,
                    answered - stacked,
                    self._clock() - answered,
                )
        except asyncio.CancelledError:
            _fail(batch, Unavailable(f"variant '{self.name}' is shutting down"))
            raise
        except Exception as exc:
            _fail(batch, exc)
            return
        finally:
            took = self._clock() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * took
        for p, part in zip(batch, parts, strict=True):
            if not p.future.done():
                p.future.set_result(part)

    async def aclose(self) -> None:
        """Stops the engine; whatever is still queued or in flight fails as unavailable."""
        self._closed = True
        lanes = list(self._lanes.values())
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        for lane in lanes:
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
            _fail(list(lane.queue), Unavailable(f"variant '{self.name}' is shutting down"))
            lane.queue.clear()
        self._lanes.clear()
