"""The batcher: take_batch's rules (pure, with a fake clock), stack/split, and the engine."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.batching import (
    Batcher,
    Pending,
    batch_deadline,
    batch_key,
    expected_company,
    split,
    stack,
    take_batch,
)
from gateway.config import BatchingConfig
from gateway.errors import DeadlineExceeded, Overloaded, Unavailable
from gateway.tensors import InferRequest, InferResponse, Tensor


def _req(rows: int, width: int = 4, fill: float = 0.0) -> InferRequest:
    return InferRequest("m", (Tensor("x", "FP32", np.full((rows, width), fill, np.float32)),))


# take_batch only asks a future whether it is done: one idle loop makes them all.
_LOOP = asyncio.new_event_loop()


@pytest.fixture(scope="module", autouse=True)
def _close_loop() -> Iterator[None]:
    yield
    _LOOP.close()


def _pending(rows: int, deadline: float = 100.0, width: int = 4) -> Pending:
    request = _req(rows, width)
    future: asyncio.Future[InferResponse] = _LOOP.create_future()
    return Pending(request, deadline, rows, batch_key(request), future)


def test_take_batch_keeps_order_and_the_row_limit() -> None:
    queue = deque([_pending(3), _pending(3), _pending(3)])
    batch, expired = take_batch(queue, now=0.0, max_rows=7)
    assert [p.rows for p in batch] == [3, 3] and not expired
    assert len(queue) == 1


def test_a_single_request_over_the_limit_goes_alone() -> None:
    queue = deque([_pending(50), _pending(1)])
    batch, _ = take_batch(queue, now=0.0, max_rows=8)
    assert [p.rows for p in batch] == [50]


def test_expired_and_abandoned_requests_never_go() -> None:
    gone = _pending(1)
    gone.future.cancel()
    queue = deque([_pending(1, deadline=5.0), gone, _pending(2), _pending(1, deadline=5.0)])
    batch, expired = take_batch(queue, now=10.0, max_rows=8)
    assert [p.rows for p in batch] == [2]
    assert len(expired) == 2  # the head, and the one after the batch: expired either way


def test_a_batch_goes_with_its_latest_deadline() -> None:
    """A member with a short deadline must not cut the time of those batched with it."""
    queue = deque([_pending(1, deadline=5.0), _pending(1, deadline=0.07), _pending(1, 5.0)])
    batch, _ = take_batch(queue, now=0.0, max_rows=8)
    assert len(batch) == 3 and batch_deadline(batch) == 5.0


@given(
    st.lists(st.tuples(st.integers(1, 10), st.floats(0, 20)), max_size=30),
    st.integers(1, 16),
)
def test_take_batch_invariants(entries: list[tuple[int, float]], max_rows: int) -> None:
    queue = deque(_pending(rows, deadline) for rows, deadline in entries)
    order = list(queue)
    now = 10.0
    seen: list[Pending] = []
    while queue:
        batch, expired = take_batch(queue, now, max_rows)
        assert all(p.deadline <= now for p in expired)
        assert all(p.deadline > now for p in batch)
        assert len(batch) <= 1 or sum(p.rows for p in batch) <= max_rows
        seen += batch + expired
    assert sorted(map(id, seen)) == sorted(map(id, order))
    sent = [p for p in seen if p.deadline > now]
    assert sent == [p for p in order if p.deadline > now]  # order kept


@given(st.lists(st.integers(0, 5), min_size=1, max_size=6))
def test_split_inverts_stack(rows: list[int]) -> None:
    requests = [_req(n, fill=float(i)) for i, n in enumerate(rows)]
    merged = stack(requests)
    assert merged.inputs[0].shape == (sum(rows), 4)
    response = InferResponse("m", (Tensor("y", "FP32", merged.inputs[0].data * 2),))
    for part, request in zip(split(response, rows), requests, strict=True):
        np.testing.assert_array_equal(part.outputs[0].data, request.inputs[0].data * 2)


class SlowRunner:
    """Answers y = x + 1 after a real delay, and records each call's rows."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.calls: list[int] = []
        self.deadlines: list[tuple[float, float]] = []
        self.params: list[tuple[object, float]] = []
        self.starts: list[tuple[object, float]] = []
        self.error: Exception | None = None

    async def __call__(self, request: InferRequest, deadline: float) -> InferResponse:
        now = asyncio.get_running_loop().time()
        self.calls.append(request.inputs[0].shape[0])
        self.deadlines.append((now, deadline))
        self.params.append((request.parameters.get("k"), now))
        self.starts.append((request.parameters.get("k"), now))
        try:
            await asyncio.wait_for(asyncio.sleep(self.delay), deadline - now)
        except TimeoutError:
            raise DeadlineExceeded("runner: deadline passed") from None
        if self.error:
            raise self.error
        return InferResponse("m", (Tensor("y", "FP32", request.inputs[0].data + 1),))


async def test_concurrent_requests_share_runner_calls() -> None:
    runner = SlowRunner()
    batcher = Batcher(
        "m@a", BatchingConfig(max_batch_size=8), runner, clock=asyncio.get_running_loop().time
    )
    requests = [_req(1, fill=float(i)) for i in range(20)]
    deadline = asyncio.get_running_loop().time() + 10
    answers = await asyncio.gather(*(batcher.submit(r, deadline) for r in requests))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer.outputs[0].data, np.full((1, 4), i + 1.0))
    assert len(runner.calls) < 20 and max(runner.calls) <= 8 and sum(runner.calls) == 20
    await batcher.aclose()


async def test_a_lone_request_is_sent_at_once() -> None:
    runner = SlowRunner()
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(max_batch_size=8), runner, clock=loop.time)
    answer = await batcher.submit(_req(1), loop.time() + 10)
    assert runner.calls == [1] and answer.outputs[0].shape == (1, 4)
    await batcher.aclose()


async def test_full_queue_refuses_with_a_retry_hint() -> None:
    runner = SlowRunner(delay=0.2)
    batcher = Batcher(
        "m@a", BatchingConfig(max_queue=2), runner, clock=asyncio.get_running_loop().time
    )
    deadline = asyncio.get_running_loop().time() + 10
    first = asyncio.ensure_future(batcher.submit(_req(1), deadline))
    await asyncio.sleep(0.01)  # the first is now in flight; two more fill the queue
    waiting = [asyncio.ensure_future(batcher.submit(_req(1), deadline)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(_req(1), deadline)
    assert info.value.retry_after is not None and info.value.retry_after > 0
    await asyncio.gather(first, *waiting)
    await batcher.aclose()


async def test_requests_expiring_in_the_queue_get_504_at_their_deadline_and_are_not_sent() -> None:
    runner = SlowRunner(delay=0.5)
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(), runner, clock=loop.time)
    first = asyncio.ensure_future(batcher.submit(_req(1), loop.time() + 10))
    await asyncio.sleep(0.01)
    deadline = loop.time() + 0.05
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(_req(2), deadline)
    # answered at its own deadline, not when the 0.5 s batch ahead of it came back
    assert loop.time() - deadline < 0.3
    await first
    assert runner.calls == [1]
    await batcher.aclose()


async def test_abandoned_requests_do_not_count_toward_the_queue_limit() -> None:
    runner = SlowRunner(delay=0.3)
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(max_queue=2), runner, clock=loop.time)
    first = asyncio.ensure_future(batcher.submit(_req(1), loop.time() + 10))
    await asyncio.sleep(0.01)
    for _ in range(2):  # two callers that give up while queued
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(_req(1), loop.time() + 0.01)
    answer = await batcher.submit(_req(1), loop.time() + 10)
    assert answer.outputs[0].shape == (1, 4)
    await first
    await batcher.aclose()


async def test_a_failed_call_fails_every_member_and_the_next_batch_works() -> None:
    runner = SlowRunner()
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(), runner, clock=loop.time)
    runner.error = Unavailable("runner gone")
    results = await asyncio.gather(
        *(batcher.submit(_req(1), loop.time() + 10) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    runner.error = None
    assert (await batcher.submit(_req(1), loop.time() + 10)).outputs[0].shape == (1, 4)
    await batcher.aclose()


async def test_close_fails_what_is_queued_and_what_is_in_flight() -> None:
    runner = SlowRunner(delay=0.2)
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(), runner, clock=loop.time)
    in_flight = asyncio.ensure_future(batcher.submit(_req(1), loop.time() + 10))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(batcher.submit(_req(1), loop.time() + 10))
    await asyncio.sleep(0)
    await batcher.aclose()
    for waiter in (in_flight, queued):
        with pytest.raises(Unavailable, match="shutting down"):
            await waiter


def test_requests_with_different_parameters_are_not_merged() -> None:
    a = InferRequest("m", _req(1).inputs, parameters={"k": 1})
    b = InferRequest("m", _req(1).inputs, parameters={"k": 2})
    assert batch_key(a) != batch_key(b)
    assert batch_key(a) == batch_key(InferRequest("m", _req(3).inputs, parameters={"k": 1}))
    assert stack([a, a]).parameters == {"k": 1}


async def test_a_short_deadline_fails_alone_not_the_requests_batched_with_it() -> None:
    """One 70 ms request in a batch with five 5 s ones: it gets 504 at its own deadline,
    the five get their answers (they used to fail with it)."""
    runner = SlowRunner(delay=0.2)  # and, as a real backend, it gives up at its deadline
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(), runner, clock=loop.time)
    now = loop.time()
    long = [asyncio.ensure_future(batcher.submit(_req(1), now + 5)) for _ in range(5)]
    short = asyncio.ensure_future(batcher.submit(_req(1), now + 0.07))
    results = await asyncio.gather(*long, return_exceptions=True)
    assert all(isinstance(r, InferResponse) for r in results), results
    with pytest.raises(DeadlineExceeded):
        await short
    assert runner.calls == [6]  # the short one was in the batch: it just stopped waiting
    assert runner.deadlines[0][1] == now + 5
    await batcher.aclose()


async def test_requests_that_cannot_share_a_call_do_not_serialize() -> None:
    """20 requests alternating two runner parameters: two lanes, each batching its own,
    never 20 single-row calls one after another."""
    runner = SlowRunner(delay=0.05)
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(max_batch_size=32), runner, clock=loop.time)
    requests = [
        InferRequest("m", _req(1).inputs, parameters={"k": i % 2}) for i in range(20)
    ]
    started = loop.time()
    await asyncio.gather(*(batcher.submit(r, loop.time() + 10) for r in requests))
    assert len(runner.calls) <= 4 and sum(runner.calls) == 20
    assert {k for k, _ in runner.params} == {0, 1}
    # both lanes were in flight at once: the first call of each started together
    firsts = [t for _, t in runner.starts[:2]]
    assert abs(firsts[1] - firsts[0]) < 0.04
    assert loop.time() - started < 20 * 0.05
    await batcher.aclose()


def test_expected_company_follows_the_recent_mean_of_requests_per_batch() -> None:
    assert [expected_company(m) for m in (1.0, 1.49, 1.5, 3.7, 16.0)] == [1, 1, 2, 4, 16]


async def _busy(batcher: Batcher, clients: int, rounds: int = 12) -> None:
    """`clients` requests at once, `rounds` times: batches of `clients` requests."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        await asyncio.gather(*(batcher.submit(_req(1), loop.time() + 10) for _ in range(clients)))


async def _spread(batcher: Batcher, n: int, gap: float) -> None:
    """`n` requests arriving `gap` seconds apart, each while the lane is idle."""
    loop = asyncio.get_running_loop()

    async def one(i: int) -> InferResponse:
        await asyncio.sleep(gap * i)
        return await batcher.submit(_req(1, fill=float(i)), loop.time() + 10)

    answers = await asyncio.gather(*(one(i) for i in range(n)))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer.outputs[0].data, np.full((1, 4), i + 1.0))


@pytest.mark.parametrize(("adaptive_ms", "calls"), [(500.0, [4]), (0.0, [1, 1, 1, 1])])
async def test_under_load_a_batch_waits_for_the_company_recent_batches_had(
    adaptive_ms: float, calls: list[int]
) -> None:
    """After batches of four, four requests arriving 10 ms apart to an idle lane go as one
    call (the first waits for the others); with adaptive_delay_ms 0, as four."""
    runner = SlowRunner(delay=0.001)
    loop = asyncio.get_running_loop()
    cfg = BatchingConfig(max_batch_size=8, adaptive_delay_ms=adaptive_ms)
    batcher = Batcher("m@a", cfg, runner, clock=loop.time)
    await _busy(batcher, clients=4)
    assert runner.calls == [4] * 12
    runner.calls.clear()
    await _spread(batcher, 4, gap=0.01)
    assert runner.calls == calls
    await batcher.aclose()


async def test_a_lone_client_never_waits_for_company() -> None:
    runner = SlowRunner(delay=0.001)
    loop = asyncio.get_running_loop()
    cfg = BatchingConfig(adaptive_delay_ms=500)
    batcher = Batcher("m@a", cfg, runner, clock=loop.time)
    started = loop.time()
    for _ in range(20):
        await batcher.submit(_req(1), loop.time() + 10)
    assert runner.calls == [1] * 20
    assert loop.time() - started < 0.5  # one wait for company alone would take 0.5 s
    await batcher.aclose()


async def test_company_that_does_not_come_costs_the_delay_a_few_times_then_nothing() -> None:
    """After batches of four, lone requests: each is answered (none is left waiting with
    no timer), the first ones after the delay, and once the mean of requests per batch
    has fallen, at once."""
    runner = SlowRunner(delay=0.001)
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(adaptive_delay_ms=50), runner, clock=loop.time)
    await _busy(batcher, clients=4)
    took = []
    for _ in range(12):
        start = loop.time()
        await asyncio.wait_for(batcher.submit(_req(1), loop.time() + 10), 5)
        took.append(loop.time() - start)
    assert took[0] >= 0.045  # it waited for company, up to the delay
    assert max(took[-2:]) < 0.045  # the last ones no longer wait
    await batcher.aclose()


async def test_waiting_for_company_leaves_a_short_deadline_its_time() -> None:
    """A 200 ms request under a 5 s adaptive delay is still answered: the wait stops at
    half of what its deadline leaves."""
    runner = SlowRunner(delay=0.001)
    loop = asyncio.get_running_loop()
    batcher = Batcher("m@a", BatchingConfig(adaptive_delay_ms=5000), runner, clock=loop.time)
    await _busy(batcher, clients=4)
    answer = await batcher.submit(_req(1), loop.time() + 0.2)
    assert answer.outputs[0].shape == (1, 4) and runner.calls[-1] == 1
    await batcher.aclose()
