"""Router hedging: race a primary call against a second one sent after a delay, in budget.

`race` waits for the primary up to the delay; then (if `start_second` sends one) for the
first of the two to answer. A client's error (4xx) is an answer too; a runner-side failure
of one waits for the other; when both fail, the primary's error is raised. Whatever is
still running when `race` returns or is cancelled is cancelled: the loser never lingers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.router.circuit import is_runner_failure
from gateway.tensors import InferResponse

Sleep = Callable[[float], Awaitable[None]]


class HedgeBudget:
    """Hedge tokens: every primary call of a hedged plan adds `share`, every hedge spends
    one, so hedges never exceed share x primary calls. The bucket starts empty and holds
    at most `cap` tokens, which bounds a burst of hedges after a quiet spell."""

    def __init__(self, cap: float = 10.0) -> None:
        self.cap = cap
        self.tokens = 0.0

    def deposit(self, share: float) -> None:
        self.tokens = min(self.cap, self.tokens + share)

    def spend(self) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class Raced:
    response: InferResponse
    hedge_won: bool
    hedged: bool


async def race(
    first: asyncio.Task[InferResponse],
    start_second: Callable[[], asyncio.Task[InferResponse] | None],
    after_s: float,
    sleep: Sleep,
) -> Raced:
    """The first answer of `first` and, once `after_s` has passed without one, of the task
    `start_second()` returns (None: no hedge after all, wait for `first`)."""
    timer: asyncio.Future[None] = asyncio.ensure_future(sleep(after_s))
    second: asyncio.Task[InferResponse] | None = None
    try:
        await asyncio.wait((first, timer), return_when=asyncio.FIRST_COMPLETED)
        if not first.done():
            second = start_second()
        if second is None:
            return Raced(await first, hedge_won=False, hedged=False)
        pending: set[asyncio.Task[InferResponse]] = {first, second}
        failure: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in (first, second):  # both done at once: the primary's answer first
                if task not in done:
                    continue
                exc = task.exception()
                if exc is None:
                    return Raced(task.result(), hedge_won=task is second, hedged=True)
                if not is_runner_failure(exc):
                    raise exc
                if task is first or failure is None:
                    failure = exc
        assert failure is not None
        raise failure
    finally:
        for task in (first, second, timer):
            if task is not None and not task.done():
                task.cancel()
