"""Router shadows: copies of answered requests sent to candidate variants, off the critical path.

A copy starts only after the primary has answered and the route has returned, as its own
task, so it can neither delay nor fail the primary's answer. Each shadow has a bound of
copies in flight; past it a copy is dropped (counted), never queued, so a shadow that
hangs costs at most that many tasks. A finished copy's answer is compared with the
primary's (parity.compare) and reported, with its latency, through RouterMetrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.router.metrics import RouterMetrics
from gateway.router.parity import compare
from gateway.router.plan import Mirror, Send
from gateway.tensors import InferRequest, InferResponse

log = logging.getLogger("servegate.router")

Clock = Callable[[], float]


class Shadows:
    """One model's shadow copies in flight."""

    def __init__(
        self,
        model: str,
        call: Send,
        *,
        usable: Callable[[str], bool],
        metrics: RouterMetrics,
        clock: Clock,
    ) -> None:
        self._model = model
        self._call = call
        self._usable = usable
        self._metrics = metrics
        self._clock = clock
        self._inflight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def inflight(self, shadow: str) -> int:
        return self._inflight.get(shadow, 0)

    def send(
        self,
        mirror: Mirror,
        primary: str,
        request: InferRequest,
        answer: InferResponse,
        deadline: float,
    ) -> tuple[str, ...]:
        """Starts a copy to each shadow with room (never waits); returns those it started."""
        started = []
        for shadow in mirror.shadows:
            if shadow == primary:
                continue
            if self.inflight(shadow) >= mirror.max_inflight or not self._usable(shadow):
                self._metrics.shadow(self._model, primary, shadow, "dropped", None)
                continue
            self._inflight[shadow] = self.inflight(shadow) + 1
            task = asyncio.create_task(
                self._copy(shadow, primary, request, answer, deadline),
                name=f"shadow {self._model}@{shadow}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started.append(shadow)
        return tuple(started)

    async def _copy(
        self,
        shadow: str,
        primary: str,
        request: InferRequest,
        answer: InferResponse,
        deadline: float,
    ) -> None:
        start = self._clock()
        outcome = "cancelled"
        try:
            theirs = await self._call(shadow, request, deadline)
            outcome = "ok"
            self._metrics.shadow(self._model, primary, shadow, "ok", self._clock() - start)
            for diff in compare(answer, theirs):
                self._metrics.parity(self._model, primary, shadow, diff)
        except asyncio.CancelledError:
            self._metrics.shadow(self._model, primary, shadow, "cancelled", None)
            raise
        except Exception as exc:  # a shadow's failure is only ever counted
            if outcome == "ok":
                log.exception("comparing %s@%s with %s", self._model, shadow, primary)
            else:
                log.debug("shadow %s@%s failed: %r", self._model, shadow, exc)
                self._metrics.shadow(self._model, primary, shadow, "error", self._clock() - start)
        finally:
            self._inflight[shadow] -= 1

    async def drain(self) -> None:
        """Waits until every copy in flight has finished (tests, a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancels every copy in flight and waits for them."""
        for task in self._tasks:
            task.cancel()
        await self.drain()
