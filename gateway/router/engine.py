"""Router engine: runs a policy's Plan for one model's requests; the only router code that awaits.

`route` snapshots the variants that can serve (runner up, per `unavailable`; circuit not open),
asks the policy for a Plan, and runs it: the primary (hedged when the plan says so), then
each fallback on 503 / 429 / an open circuit while the deadline allows (never on a client's
error), then shadow copies off the critical path. Every call goes through `_call`, which
holds the circuit breaker's permit and feeds the stats. A client's pin bypasses the policy:
exactly that variant, no failover, no hedge, no copy (its circuit still applies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import DeadlineExceeded, GatewayError, ModelNotFound, Overloaded, Unavailable
from gateway.router.circuit import CircuitOpen, Circuits, CircuitState, is_runner_failure
from gateway.router.hedging import HedgeBudget, Sleep, race
from gateway.router.metrics import NoMetrics, RouterMetrics
from gateway.router.plan import Hedge, Plan, Policy, Send
from gateway.router.shadows import Shadows
from gateway.router.stats import Outcome, Stats
from gateway.tensors import InferRequest, InferResponse

Clock = Callable[[], float]
Down = Callable[[str], Unavailable | None]
"""Why a variant cannot serve now (its runner is restarting, failed, not served), or None."""

PIN = "pin"
"""The policy label of a request a client pinned (metrics)."""


@dataclass(frozen=True, slots=True)
class Routed:
    """A routed request's answer and what happened on the way."""

    response: InferResponse
    served_by: str
    """The variant whose answer this is."""
    hedged: bool = False
    """A hedge call was sent (whichever answered)."""
    mirrored: tuple[str, ...] = ()
    """Shadows a copy was sent to."""
    refused: tuple[str, ...] = ()
    """Variants tried first that could not serve (failover)."""


class Router:
    """One model's router: a swappable Policy over the model's `variants`."""

    def __init__(
        self,
        model: str,
        policy: Policy,
        *,
        variants: Sequence[str],
        send: Send,
        unavailable: Down,
        clock: Clock,
        stats: Stats | None = None,
        circuits: Circuits | None = None,
        metrics: RouterMetrics | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.model = model
        self.variants = tuple(variants)
        self.metrics: RouterMetrics = metrics if metrics is not None else NoMetrics()
        self.stats = stats if stats is not None else Stats(clock)
        if circuits is None:
            circuits = Circuits(clock=clock, on_change=self._circuit_changed)
        self.circuits = circuits
        self._policy = policy
        self._send = send
        self._unavailable = unavailable
        self._clock = clock
        self._sleep = sleep
        self._budget = HedgeBudget()
        self._racing: set[asyncio.Task[InferResponse]] = set()
        self.shadows = Shadows(
            model, self._call, usable=self.usable, metrics=self.metrics, clock=clock
        )

    def _circuit_changed(self, variant: str, old: CircuitState, new: CircuitState) -> None:
        self.metrics.circuit(self.model, variant, old, new)

    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Routes every request that starts from now on by `policy`; requests in flight
        finish under the plan they got. The hedge budget starts afresh."""
        self._policy, self._budget = policy, HedgeBudget()

    @property
    def key_header(self) -> str | None:
        """The header (HTTP) / metadata key (gRPC) whose value `route` wants as `key`."""
        return self._policy.key_header

    def usable(self, variant: str) -> bool:
        """Whether a call to `variant` would be sent now: its runner is up, its circuit lets
        it through."""
        return (
            variant in self.variants
            and self._unavailable(variant) is None
            and self.circuits.breaker(variant).can_pass()
        )

    def circuit_states(self) -> dict[str, CircuitState]:
        """Every variant's circuit state now (for metadata and metrics)."""
        return {v: self.circuits.breaker(v).state for v in self.variants}

    async def route(
        self,
        request: InferRequest,
        deadline: float,
        *,
        pin: str | None = None,
        key: str | None = None,
    ) -> Routed:
        """Answers `request` from one variant, by the client's `pin` or by the policy
        (`key`: the value of `key_header`, for sticky routing)."""
        if pin is not None:
            if pin not in self.variants:
                raise ModelNotFound(f"model '{self.model}' has no variant '{pin}'")
            down = self._unavailable(pin)
            if down is not None:
                raise down
            response = await self._call(pin, request, deadline)
            self.metrics.routed(self.model, PIN, pin)
            return Routed(response, pin)
        policy = self._policy  # one policy for the whole request, whatever set_policy does
        wanted = policy.candidates if policy.candidates is not None else self.variants
        views = self.stats.snapshot(v for v in wanted if self.usable(v))
        try:
            if not views:
                raise Unavailable(f"model '{self.model}': no variant can serve now")
            plan = policy.choose(views, key)
        except Unavailable as exc:
            raise self._explain(exc) from None
        refused: list[str] = []
        response, served, hedged = await self._run(plan, request, deadline, refused)
        mirrored: tuple[str, ...] = ()
        if plan.mirror is not None:
            mirrored = self.shadows.send(plan.mirror, served, request, response, deadline)
        self.metrics.routed(self.model, policy.config.policy, served)
        return Routed(response, served, hedged, mirrored, tuple(refused))

    def _explain(self, exc: Unavailable) -> Unavailable:
        """`exc` with why each variant cannot serve, and the soonest retry hint among them."""
        reasons, hints = [], []
        for variant in self.variants:
            down = self._unavailable(variant)
            breaker = self.circuits.breaker(variant)
            if down is not None:
                reasons.append(f"{variant}: {down.message}")
                hints.append(down.retry_after or 0.0)
            elif not breaker.can_pass():
                reasons.append(f"{variant}: circuit {breaker.state.value.lower()}")
                hints.append(breaker.retry_after())
        return Unavailable(
            f"{exc.message} ({'; '.join(reasons)})" if reasons else exc.message,
            retry_after=min((h for h in hints if h > 0), default=None),
        )

    async def _run(
        self, plan: Plan, request: InferRequest, deadline: float, refused: list[str]
    ) -> tuple[InferResponse, str, bool]:
        """The primary (hedged or not), then the fallbacks, on refusals only."""
        tried: list[str] = []
        last: GatewayError | None = None
        for variant in (plan.primary, *plan.fallbacks):
            if variant in tried:
                continue  # the hedge went there already
            if last is not None:
                if not self.usable(variant):
                    continue
                if self._clock() >= deadline:
                    raise DeadlineExceeded(
                        f"model '{self.model}': deadline passed after {tried} could not serve "
                        f"({last.message})"
                    ) from last
                self.metrics.failover(self.model, tried[-1], variant, type(last).__name__)
            tried.append(variant)
            try:
                if plan.hedge is not None and variant == plan.primary:
                    return await self._hedged(variant, plan.hedge, request, deadline, tried)
                return await self._call(variant, request, deadline), variant, False
            except (Unavailable, Overloaded) as exc:  # refusals; CircuitOpen is one
                refused.extend(v for v in tried if v not in refused)
                last = exc
        assert last is not None
        raise last

    async def _hedged(
        self, primary: str, hedge: Hedge, request: InferRequest, deadline: float, tried: list[str]
    ) -> tuple[InferResponse, str, bool]:
        self._budget.deposit(hedge.budget)
        budget = self._budget

        def second() -> asyncio.Task[InferResponse] | None:
            if self._clock() >= deadline or not self.usable(hedge.variant):
                return None
            if not budget.spend():
                self.metrics.hedge(self.model, primary, hedge.variant, "no_budget")
                return None
            self.metrics.hedge(self.model, primary, hedge.variant, "sent")
            tried.append(hedge.variant)
            return self._spawn(self._call(hedge.variant, request, deadline))

        raced = await race(
            self._spawn(self._call(primary, request, deadline)), second, hedge.after_s, self._sleep
        )
        if raced.hedged:
            outcome = "won" if raced.hedge_won else "lost"
            self.metrics.hedge(self.model, primary, hedge.variant, outcome)
        return raced.response, hedge.variant if raced.hedge_won else primary, raced.hedged

    def _spawn(self, call: Coroutine[Any, Any, InferResponse]) -> asyncio.Task[InferResponse]:
        """A raced call as a task, kept referenced until done (a cancelled loser finishes
        after its request was answered)."""
        task = asyncio.ensure_future(call)
        self._racing.add(task)
        task.add_done_callback(_forget(self._racing))
        return task

    async def _call(self, variant: str, request: InferRequest, deadline: float) -> InferResponse:
        """One call to `variant` under its circuit breaker, timed into its stats."""
        breaker = self.circuits.breaker(variant)
        permit = breaker.acquire()
        if permit is None:
            raise CircuitOpen(
                f"variant '{variant}' of model '{self.model}': circuit open",
                retry_after=breaker.retry_after() or None,
            )
        stats = self.stats.variant(variant)
        started = stats.begin()
        outcome: Outcome = "neutral"
        try:
            response = await self._send(variant, request, deadline)
            outcome = "ok"
            return response
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException as exc:
            outcome = "failed" if is_runner_failure(exc) else "neutral"
            raise
        finally:
            stats.end(started, outcome)
            breaker.record(permit, ok=outcome == "ok", failed=outcome == "failed")

    async def drain(self) -> None:
        """Waits for every call still running after its request was answered: shadow
        copies and cancelled hedge losers (tests; a graceful unload)."""
        await self.shadows.drain()
        while self._racing:
            await asyncio.gather(*self._racing, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancels the shadow copies and losers still running and waits for them."""
        for task in self._racing:
            task.cancel()
        await self.shadows.aclose()
        await self.drain()


Task = asyncio.Task[InferResponse]


def _forget(tasks: set[Task]) -> Callable[[Task], None]:
    def done(task: Task) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a loser's failure is no unhandled error

    return done
