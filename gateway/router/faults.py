"""Router fault injection: delays and aborts for a share of one variant's calls (admin only).

As Envoy's fault filter: per variant, `delay_ms` for `delay_percent` of calls and/or an
abort with `abort_status` (500, 503, 504) for `abort_percent`, the delay first. `decide`
is the pure part (rng injected); `Faults` holds the current table (model.yaml's `faults:`,
replaced at run time) and wraps a send. A delay never outlives the request's deadline: a
call whose deadline passes while delayed fails with DeadlineExceeded, as a slow runner's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.errors import DeadlineExceeded, GatewayError, Unavailable
from gateway.router.config import FaultConfig
from gateway.router.plan import Send
from gateway.tensors import InferRequest, InferResponse

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
VariantSend = Callable[[InferRequest, float], Awaitable[InferResponse]]

ABORTS: Mapping[int, type[GatewayError]] = {
    500: GatewayError,
    503: Unavailable,
    504: DeadlineExceeded,
}


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one call: delay it this long, then abort it with this status (or not)."""

    delay_s: float = 0.0
    abort: int | None = None


NO_FAULT = FaultDecision()


def decide(fault: FaultConfig | None, rng: random.Random) -> FaultDecision:
    """The fault for one call, drawn from `rng` (two independent draws: delay, abort)."""
    if fault is None:
        return NO_FAULT
    delay = fault.delay_ms / 1000 if rng.random() * 100 < fault.delay_percent else 0.0
    abort = fault.abort_status if rng.random() * 100 < fault.abort_percent else None
    return FaultDecision(delay, abort)


class Faults:
    """One model's fault table, replaceable at run time, applied by the sends it wraps."""

    def __init__(
        self,
        faults: Mapping[str, FaultConfig] | None = None,
        *,
        rng: random.Random,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._faults: Mapping[str, FaultConfig] = dict(faults or {})
        self._rng = rng
        self._clock = clock
        self._sleep = sleep

    @property
    def current(self) -> Mapping[str, FaultConfig]:
        """The faults in force, by variant (for an admin's GET)."""
        return dict(self._faults)

    def set(self, variant: str, fault: FaultConfig | None) -> None:
        """Injects `fault` into `variant`'s calls from now on; None clears it."""
        table = dict(self._faults)
        if fault is None:
            table.pop(variant, None)
        else:
            table[variant] = fault
        self._faults = table  # swapped whole: a call in progress keeps what it drew

    def replace(self, faults: Mapping[str, FaultConfig]) -> None:
        self._faults = dict(faults)

    async def apply(self, variant: str, deadline: float) -> None:
        """Delays and/or aborts one call to `variant`, as drawn now."""
        decision = decide(self._faults.get(variant), self._rng)
        if decision.delay_s > 0:
            remaining = deadline - self._clock()
            await self._sleep(max(0.0, min(decision.delay_s, remaining)))
            if decision.delay_s >= remaining:
                raise DeadlineExceeded(f"variant '{variant}': deadline passed (injected delay)")
        if decision.abort is not None:
            raise ABORTS[decision.abort](f"variant '{variant}': injected fault {decision.abort}")

    def wrap(self, send: Send) -> Send:
        """`send` (the router's: variant, request, deadline) with the faults applied."""

        async def faulty(variant: str, request: InferRequest, deadline: float) -> InferResponse:
            if variant in self._faults:  # most calls: no fault set, no draw to make
                await self.apply(variant, deadline)
            return await send(variant, request, deadline)

        return faulty

    def wrap_variant(self, variant: str, send: VariantSend) -> VariantSend:
        """One variant's `send(request, deadline)` (a batcher's, a backend call) with its
        faults applied: faults per runner call rather than per request."""

        async def faulty(request: InferRequest, deadline: float) -> InferResponse:
            if variant in self._faults:
                await self.apply(variant, deadline)
            return await send(request, deadline)

        return faulty
