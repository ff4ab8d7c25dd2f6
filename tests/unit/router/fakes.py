"""Test doubles for the router: a fake clock, a fake fleet of variants behind `send`, a timer
the test fires by hand. Named for what they are; the router sees only its public inputs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from gateway.errors import DeadlineExceeded, Unavailable
from gateway.router.config import parse_routing
from gateway.router.engine import Router
from gateway.router.policies import make_policy
from gateway.tensors import InferRequest, InferResponse, Tensor

Behaviour = Callable[[str, InferRequest, float], Awaitable[InferResponse]]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request(rows: int = 2) -> InferRequest:
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    return InferRequest("m", (Tensor("x", "FP32", x),))


def response(variant: str, x: np.ndarray, scale: float = 1.0) -> InferResponse:
    return InferResponse("m", (Tensor("y", "FP32", x * scale),), parameters={"by": variant})


def answers(scale: float = 1.0) -> Behaviour:
    """Answers at once: y = x * scale."""

    async def behave(variant: str, req: InferRequest, deadline: float) -> InferResponse:
        return response(variant, req.inputs[0].data, scale)

    return behave


def raises(error: Callable[[], BaseException]) -> Behaviour:
    async def behave(variant: str, req: InferRequest, deadline: float) -> InferResponse:
        raise error()

    return behave


def waits(gate: asyncio.Event, then: Behaviour | None = None) -> Behaviour:
    """Waits for `gate`, then behaves as `then` (answers by default)."""

    async def behave(variant: str, req: InferRequest, deadline: float) -> InferResponse:
        await gate.wait()
        return await (then or answers())(variant, req, deadline)

    return behave


def hangs() -> Behaviour:
    return waits(asyncio.Event())


def takes(clock: FakeClock, seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Advances the fake clock by `seconds` (a call that took that long), honouring the
    deadline as a backend does: past it, DeadlineExceeded at the deadline."""

    async def behave(variant: str, req: InferRequest, deadline: float) -> InferResponse:
        if clock.now + seconds > deadline:
            clock.now = max(clock.now, deadline)
            raise DeadlineExceeded("deadline")
        clock.advance(seconds)
        return await (then or answers())(variant, req, deadline)

    return behave


class Fleet:
    """A fake `send` over named variants; records every call, answer, error and cancellation."""

    def __init__(self, clock: FakeClock | None = None, **behaviours: Behaviour) -> None:
        self.clock = clock or FakeClock()
        self.behaviours: dict[str, Behaviour] = dict(behaviours)
        self.calls: list[tuple[str, float]] = []  # (variant, clock at the start)
        self.answered: list[str] = []
        self.failed: list[str] = []
        self.cancelled: list[str] = []
        self.down: set[str] = set()

    @property
    def called(self) -> list[str]:
        return [v for v, _ in self.calls]

    def unavailable(self, variant: str) -> Unavailable | None:
        if variant in self.down:
            return Unavailable(f"{variant} is down", retry_after=1.0)
        return None

    async def send(self, variant: str, req: InferRequest, deadline: float) -> InferResponse:
        self.calls.append((variant, self.clock.now))
        behave = self.behaviours.get(variant, answers())
        try:
            result = await behave(variant, req, deadline)
        except asyncio.CancelledError:
            self.cancelled.append(variant)
            raise
        except BaseException:
            self.failed.append(variant)
            raise
        self.answered.append(variant)
        return result


class ManualTimer:
    """An injected `sleep` that returns only when the test fires it (hedge delays)."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self._fired = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.started.append(seconds)
        await self._fired.wait()

    def fire(self) -> None:
        self._fired.set()


async def drained(router: Router) -> None:
    """`router.drain()`, failing rather than hanging when a call it should have cancelled
    still runs (a hang guard, not a timing assertion)."""
    await asyncio.wait_for(router.drain(), timeout=30)


async def settle(rounds: int = 5) -> None:
    """Lets tasks the code under test started run a few steps (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def router_for(
    routing: dict[str, object],
    fleet: Fleet,
    variants: tuple[str, ...] = ("a", "b", "c"),
    *,
    seed: int = 0,
    **options: Any,
) -> Router:
    """A Router over `fleet` for a routing config as model.yaml writes it."""
    policy = make_policy(parse_routing(routing), random.Random(seed))
    return Router(
        "m",
        policy,
        variants=variants,
        send=fleet.send,
        unavailable=fleet.unavailable,
        clock=fleet.clock,
        **options,
    )
