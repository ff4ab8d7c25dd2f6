"""Catalog: the models served right now, each with its variants, router and faults.

A ServedModel is swapped whole (a load installs a new one, an unload removes it), so a
request that resolved against one model finishes with that model's variants and router
whatever happens meanwhile. The catalog also carries the supervisor's word on the local
runners to every variant they serve (state, a new endpoint), and the watchdog's word on a
hung one back to the supervisor.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.base import Backend
from gateway.config import ModelConfig, Repository
from gateway.errors import Unavailable
from gateway.health import RunnerState, RunnerStatus, Watchdog
from gateway.metrics import Metrics
from gateway.router.circuit import Circuits
from gateway.router.engine import Router
from gateway.router.faults import Faults
from gateway.router.metrics import PrometheusRouterMetrics
from gateway.router.policies import make_policy
from gateway.statistics import Statistics
from gateway.tensors import InferRequest, InferResponse
from gateway.variant import ServedVariant

log = logging.getLogger(__name__)

Connect = Callable[[ModelConfig, str, str, Path | None], Backend]
"""(model, variant name, endpoint, key file) -> a backend client: how a moved runner
(a restart on new ports, a standby taking over, a fresh one after a load) is reached."""


@dataclass(eq=False)
class ServedModel:
    """One model as it is served now."""

    config: ModelConfig
    variants: dict[str, ServedVariant]
    router: Router
    faults: Faults

    async def aclose(self) -> None:
        await self.router.aclose()
        for served in self.variants.values():
            await served.aclose()


def for_runner(request: InferRequest, served: ServedVariant) -> InferRequest:
    """`request` with only the parameters `served`'s runner reads (they are part of the
    batch key: fewer means fuller batches)."""
    wanted = served.config.kind.parameters
    if wanted is None or not request.parameters:
        return request
    return dataclasses.replace(
        request, parameters={k: v for k, v in request.parameters.items() if k in wanted}
    )


class Catalog:
    """Every served model and variant, with what they share: metrics, statistics, the
    watchdog, the way to reach runners."""

    def __init__(
        self,
        repository: Repository,
        *,
        metrics: Metrics,
        statistics: Statistics,
        watchdog: Watchdog,
        clock: Callable[[], float],
        rng: random.Random,
        connect: Connect | None,
        reach: Mapping[str, tuple[str, Path | None]] | None = None,
    ) -> None:
        self.repository = repository
        self.metrics = metrics
        self.statistics = statistics
        self.watchdog = watchdog
        self.clock = clock
        self.rng = rng
        self.connect = connect
        self.reach = dict(reach or {})
        """runner kind -> (endpoint, key file): how its local runner is reached now."""
        self.router_metrics = PrometheusRouterMetrics(metrics.registry)
        self.models: dict[str, ServedModel] = {}
        self.runner_statuses: dict[str, RunnerStatus] = {}
        self._restarts: dict[str, int] = {}
        self.count_restarts = True
        """Whether runner restarts go into the metrics here (a fleet counts them in one
        worker only: every worker hears of every restart)."""
        self.router_metrics.watch_circuits(
            lambda: {m: s.router.circuit_states() for m, s in self.models.items()},
            register=metrics.watch,
        )

    def variants(self) -> Iterator[ServedVariant]:
        for model in self.models.values():
            yield from model.variants.values()

    def variant(self, model: str, variant: str) -> ServedVariant | None:
        served = self.models.get(model)
        return served.variants.get(variant) if served is not None else None

    def serve(self, model: ModelConfig, backends: Mapping[str, Backend]) -> ServedModel:
        """A ServedModel over `backends` (variant -> client), routed as model.yaml says."""
        variants: dict[str, ServedVariant] = {}
        for name, backend in backends.items():
            served = ServedVariant(
                model, name, backend,
                metrics=self.metrics, clock=self.clock, statistics=self.statistics,
            )  # fmt: skip
            served.status = self.runner_statuses.get(served.config.runner)
            if served.config.endpoint:
                served.status = None  # an external server: no supervisor speaks for it
            variants[name] = served

        async def send(variant: str, request: InferRequest, deadline: float) -> InferResponse:
            served = variants.get(variant)
            if served is None:
                raise Unavailable(f"variant '{variant}' of model '{model.name}' is not served")
            return await served.infer(for_runner(request, served), deadline)

        def unavailable(variant: str) -> Unavailable | None:
            served = variants.get(variant)
            if served is None:
                return Unavailable(f"variant '{variant}' of model '{model.name}' is not served")
            return served.unavailable()

        faults = Faults(model.faults, rng=self.rng, clock=self.clock)
        metrics = self.router_metrics
        router = Router(
            model.name,
            make_policy(model.routing, self.rng),
            variants=list(model.variants),
            send=faults.wrap(send),
            unavailable=unavailable,
            clock=self.clock,
            circuits=Circuits(
                model.circuit,
                clock=self.clock,
                on_change=lambda v, old, new: metrics.circuit(model.name, v, old, new),
            ),
            metrics=metrics,
        )
        return ServedModel(model, variants, router, faults)

    def install(self, served: ServedModel) -> ServedModel | None:
        """Serves `served` from here on; returns the model it replaces, to drain."""
        old = self.remove(served.config.name)
        self.models[served.config.name] = served
        for variant in served.variants.values():
            self.watchdog.watch(variant.key, variant.probe, variant.progress)
        return old

    def remove(self, name: str) -> ServedModel | None:
        old = self.models.pop(name, None)
        if old is not None:
            for variant in old.variants.values():
                self.watchdog.forget(variant.key)
        return old

    def backends_for(
        self, model: ModelConfig, fresh: Mapping[str, tuple[str, Path | None]]
    ) -> dict[str, Backend]:
        """A client per variant of `model`: its own endpoint, else its runner kind's (a
        fresh runner's if `fresh` names one, else where it is reached now)."""
        if self.connect is None:
            raise Unavailable("this gateway cannot load models (no way to reach runners)")
        out = {}
        for name, variant in model.variants.items():
            endpoint, key_file = {**self.reach, **fresh}.get(variant.runner, ("", None))
            endpoint = variant.endpoint or endpoint
            if endpoint:
                out[name] = self.connect(model, name, endpoint, key_file)
        return out

    def runner_status(self, status: RunnerStatus) -> None:
        """The supervisor's word on a local runner: every variant it serves follows it, and
        reaches it at its (new) endpoint once it is READY again."""
        self.runner_statuses[status.kind] = status
        if status.endpoint:
            self.reach[status.kind] = (status.endpoint, status.key_file)
        up = status.state is RunnerState.READY
        self.metrics.runner_up.labels(status.kind).set(1 if up else 0)
        counted = self._restarts.get(status.kind, 0)
        if status.restarts > counted:
            if self.count_restarts:
                self.metrics.runner_restarts.labels(status.kind).inc(status.restarts - counted)
            self._restarts[status.kind] = status.restarts
        for model in self.models.values():
            for name, served in model.variants.items():
                if served.config.runner != status.kind or served.config.endpoint:
                    continue
                before, served.status = served.status, status
                moved = getattr(served.backend, "endpoint", status.endpoint) != status.endpoint
                if up and moved and status.endpoint and self.connect is not None:
                    log.warning("variant %s: its runner moved to %s", served.key, status.endpoint)
                    served.repoint(
                        self.connect(served.model, served.name, status.endpoint, status.key_file)
                    )
                if up and (moved or before is None or before.pid != status.pid):
                    model.router.circuits.breaker(name).reset()  # a new process: no history

    def baseline(self, status: RunnerStatus) -> None:
        """Takes the restarts `status` reports as counted already (by someone else)."""
        self._restarts[status.kind] = max(self._restarts.get(status.kind, 0), status.restarts)

    def runners(self) -> list[dict[str, Any]]:
        """The local runners as the supervisor last reported them (an admin's view)."""
        return [
            {
                "kind": st.kind, "state": st.state.value, "reason": st.reason,
                "restarts": st.restarts, "pid": st.pid, "endpoint": st.endpoint,
                "standby": st.standby,
            }
            for st in self.runner_statuses.values()
        ]  # fmt: skip

    def stuck(self, key: str, reason: str, on_stuck: Callable[[str, str], None] | None) -> None:
        """The watchdog found variant `key` hung: count it, and have a local runner
        restarted (an external one cannot be; its circuit keeps traffic off it)."""
        model, _, variant = key.partition("@")
        served = self.variant(model, variant)
        if served is None:
            return
        self.metrics.variant_stuck.labels(model, variant).inc()
        if not served.config.endpoint and on_stuck is not None:
            on_stuck(served.config.runner, f"variant {key}: {reason}")

    async def aclose(self) -> None:
        for model in self.models.values():
            await model.aclose()
