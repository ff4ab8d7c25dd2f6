"""DataPlane: the one object both front ends call. Admits, validates, routes, forwards.

api/http.py and api/grpc.py only translate bytes to InferRequest and back; everything
a request means (admission, model lookup, version, signature check, the variant a pin or
the model's routing policy picks, deadline, output selection) happens here, once for both
protocols. The served models live in the Catalog (catalog.py): each with its variants
(variant.py: backend, batcher, runner state) and its Router (router/engine.py).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway import __version__, forwarding, views
from gateway.admission import Admission, Ticket
from gateway.backends.base import Backend
from gateway.catalog import Catalog, Connect, ServedModel
from gateway.config import ModelConfig, Repository
from gateway.errors import BadRequest, GatewayError, ModelNotFound
from gateway.health import RunnerStatus, Watchdog
from gateway.metrics import Metrics
from gateway.protocol import signature
from gateway.protocol.grpc_errors import internal
from gateway.router import selection
from gateway.router.config import FaultConfig, RoutingBase, check_names, parse_routing
from gateway.router.engine import Routed
from gateway.router.policies import make_policy
from gateway.statistics import Statistics
from gateway.tensors import InferRequest, InferResponse
from gateway.variant import ServedVariant

log = logging.getLogger(__name__)

EXTENSIONS = (
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "servegate_variants",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A resolved request target: the model, its version, the variant it is accounted to
    (the pin, or the routing default), the pin if the client gave one, and the model as
    it is served (variants, router)."""

    model: ModelConfig
    version: str
    variant: str
    pin: str | None
    served: ServedModel


class DataPlane:
    """Serves a Repository through `backends`, keyed by (model, variant)."""

    def __init__(
        self,
        repository: Repository,
        backends: Mapping[tuple[str, str], Backend],
        *,
        default_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        max_concurrency: int = 128,
        max_queued_bytes: int = 256 * 1024 * 1024,
        hang_timeout_s: float = 0.0,
        connect: Connect | None = None,
        reach: Mapping[str, tuple[str, Path | None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock = clock
        self.admission = Admission(max_queued_bytes=max_queued_bytes)
        self.statistics = Statistics()
        self.on_stuck: Callable[[str, str], None] | None = None
        """Told (runner kind, reason) when a local runner is found hung: the supervisor."""
        watchdog = Watchdog(
            hang_timeout_s=hang_timeout_s,
            on_stuck=lambda key, why: self.catalog.stuck(key, why, self.on_stuck),
            clock=clock,
        )
        self.catalog = Catalog(
            repository, metrics=self.metrics, statistics=self.statistics, watchdog=watchdog,
            clock=clock, rng=rng or random.Random(), connect=connect, reach=reach,
        )  # fmt: skip
        self.draining = False
        self.live_check: Callable[[], bool] = lambda: True
        """The gateway's own health (its front ends), set by whoever serves this dataplane."""
        self._default_timeout_s = default_timeout_s
        self._max_concurrency = max_concurrency
        for model in repository.values():
            ours = {v: b for (m, v), b in backends.items() if m == model.name}
            self.catalog.install(self.catalog.serve(model, ours))
        self.metrics.watch_load(self._inflight, lambda: self.admission.queued_bytes)

    @property
    def repository(self) -> Repository:
        return self.catalog.repository

    def start(self) -> None:
        """Starts the background work (the watchdog); call from the serving event loop."""
        self.catalog.watchdog.start()

    def _inflight(self) -> dict[str, int]:
        return {s.key: self.admission.inflight(s.key) for s in self.catalog.variants()}

    def install(
        self,
        repository: Repository,
        model: ModelConfig,
        endpoints: Mapping[str, tuple[str, Path | None]],
    ) -> ServedModel | None:
        """Serves `model` (as `repository` now has it) from here on, in one step: requests
        that resolve after this see the new configuration, variants and routing; the ones
        already on their way finish on the old, returned for the caller to drain.
        `endpoints`: runner kind -> (endpoint, key file) of fresh local runners."""
        served = self.catalog.serve(model, self.catalog.backends_for(model, endpoints))
        self.catalog.repository = repository
        return self.catalog.install(served)

    def remove(self, name: str) -> ServedModel | None:
        """Stops serving model `name` (404 from here on); returns it, to drain."""
        old = self.catalog.remove(name)
        models = {k: v for k, v in self.repository.items() if k != name}
        self.catalog.repository = Repository(self.repository.root, models)
        return old

    def resolve(self, model_name: str, version: str = "", *pins: str | None) -> Target:
        """Looks up model, version and pin; 404 for any unknown one."""
        name, alias_pin = selection.split_alias(model_name)
        served = self.catalog.models.get(name)
        if served is None:
            raise ModelNotFound(f"unknown model '{name}'")
        model = served.config
        if version and version not in model.versions:
            raise ModelNotFound(
                f"model '{name}' has no version '{version}' (versions: {list(model.versions)})"
            )
        pin = selection.pin(model, alias_pin, *pins)
        variant = pin or served.router.policy.config.default
        return Target(model, version or model.latest_version, variant, pin, served)

    def admit(
        self, model_name: str, version: str, pin: str | None, nbytes: int, protocol: str = ""
    ) -> Ticket:
        """Admission before the body is read: the variant the URL and headers name, and
        the body's declared size. 404, 413 or 429 here, at once (and counted)."""
        model = variant = ""
        ticket = None
        try:
            target = self.resolve(model_name, version, pin)
            model, variant = target.model.name, target.variant
            ticket = self.hold(nbytes)
            self._enter(ticket, target)
        except GatewayError as exc:
            if ticket is not None:
                ticket.release()
            self.metrics.requests(model, variant, protocol, type(exc).__name__).inc()
            raise
        return ticket

    def hold(self, nbytes: int) -> Ticket:
        """Admission of `nbytes` of request before it is decoded (413 or 429)."""
        return self.admission.hold(nbytes)

    def _enter(self, ticket: Ticket, target: Target) -> None:
        limits = target.model.limits
        limit = limits.max_concurrency if limits is not None else self._max_concurrency
        served = target.served.variants.get(target.variant)
        retry_after = served.retry_after if served is not None else 1.0
        ticket.enter(f"{target.model.name}@{target.variant}", limit, retry_after)

    async def infer(
        self,
        request: InferRequest,
        *,
        deadline: float | None = None,
        pin: str | None = None,
        protocol: str = "",
        ticket: Ticket | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InferResponse:
        """Validates `request`, routes it to a variant, and answers in the client's names.

        The deadline is the earliest of the caller's own (gRPC's) and the request's
        `timeout` parameter (microseconds, Triton's convention); the model's default only
        when the caller gave neither. `ticket` is the admission the front end took before
        decoding; without one, the request is admitted here. `headers` (HTTP headers or
        gRPC metadata) carry the routing key of sticky policies. `protocol` (http or
        grpc) only labels the metrics.
        """
        start = self.clock()
        target: Target | None = None
        served_by = ""
        own = ticket is None
        if ticket is None:
            ticket = self.hold(sum(t.data.nbytes for t in request.inputs))
        try:
            target = self.resolve(
                request.model_name, request.model_version, pin, forwarding.param_pin(request)
            )
            served_by = target.variant
            self._enter(ticket, target)
            routed = await self._route(request, target, deadline, headers or {})
            served_by = routed.served_by
            response = forwarding.answer(request, target.version, routed)
        except GatewayError as exc:
            self._count(target, served_by, protocol, type(exc).__name__, start)
            raise
        except Exception as exc:
            # A bug or an unforeseen backend failure: logged with an error id, answered as
            # a 500 that carries only that id.
            self._count(target, served_by, protocol, "GatewayError", start)
            raise internal(log, f"serving {request.model_name}") from exc
        finally:
            if own:
                ticket.release()
        self._count(target, served_by, protocol, "ok", start)
        return response

    def _count(
        self, target: Target | None, variant: str, protocol: str, outcome: str, start: float
    ) -> None:
        """One answered request in the metrics and, once its variant is known, the
        statistics extension's success/fail counters."""
        took = self.clock() - start
        model = target.model.name if target is not None else ""
        self.metrics.requests(model, variant, protocol, outcome).inc()
        if outcome == "ok":
            self.metrics.request_seconds(model, variant, protocol).observe(took)
        if target is not None:
            self.statistics.request((model, target.version, variant), outcome == "ok", took)

    async def _route(
        self,
        request: InferRequest,
        target: Target,
        deadline: float | None,
        headers: Mapping[str, str],
    ) -> Routed:
        signature.check(request, target.model.signature)
        model = target.model
        default_s = (
            model.default_timeout_ms / 1000
            if model.default_timeout_ms is not None
            else self._default_timeout_s
        )
        router = target.served.router
        key_header = router.key_header
        return await router.route(
            forwarding.forwarded(request, target.version),
            forwarding.deadline(self.clock(), deadline, request, default_s),
            pin=target.pin,
            key=headers.get(key_header) if key_header else None,
        )

    def served(self, model: str, variant: str) -> ServedVariant | None:
        """One variant's machinery (backend, batcher, runner status), if it is served."""
        return self.catalog.variant(model, variant)

    def runner_status(self, status: RunnerStatus) -> None:
        """The supervisor's word on a local runner (catalog.Catalog.runner_status)."""
        self.catalog.runner_status(status)

    def set_routing(self, model_name: str, doc: Any) -> RoutingBase:
        """Routes `model_name`'s requests by the policy `doc` describes, from now on."""
        served = self.resolve(model_name).served
        try:
            config = parse_routing(doc)
            check_names(config, served.config.variants)
        except ValueError as exc:  # pydantic's ValidationError is one
            raise BadRequest(f"model '{served.config.name}': routing: {exc}") from None
        served.router.set_policy(make_policy(config, self.catalog.rng))
        log.warning("model %s now routed by %s", served.config.name, config.model_dump())
        return config

    def routing(self, model_name: str) -> dict[str, Any]:
        """The routing policy in force for `model_name`, and its faults."""
        served = self.resolve(model_name).served
        return {
            "routing": served.router.policy.config.model_dump(),
            "faults": {v: f.model_dump() for v, f in served.faults.current.items()},
        }

    def set_fault(self, model_name: str, variant: str, doc: Any | None) -> None:
        """Injects the fault `doc` describes into `variant`'s calls (None: clears it)."""
        served = self.resolve(model_name).served
        if variant not in served.config.variants:
            raise ModelNotFound(f"model '{served.config.name}' has no variant '{variant}'")
        try:
            fault = None if doc is None else FaultConfig.model_validate(doc)
        except ValueError as exc:
            raise BadRequest(f"fault for {served.config.name}@{variant}: {exc}") from None
        served.faults.set(variant, fault)
        log.warning("model %s variant %s: fault %s", served.config.name, variant, doc)

    async def variant_ready(self, model: str, variant: str) -> bool:
        served = self.catalog.variant(model, variant)
        ready = served is not None and await served.ready()
        self.metrics.variant_up.labels(model, variant).set(1 if ready else 0)
        return ready

    async def model_ready(self, model_name: str, version: str = "", pin: str | None = None) -> bool:
        target = self.resolve(model_name, version, pin)
        return await self.variant_ready(target.model.name, target.variant)

    def server_live(self) -> bool:
        return self.live_check()

    async def server_ready(self) -> bool:
        """Ready when not draining and every model's default variant is."""
        if self.draining:
            return False
        for name, served in self.catalog.models.items():
            if not await self.variant_ready(name, served.router.policy.config.default):
                return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "servegate", "version": __version__, "extensions": list(EXTENSIONS)}

    async def model_metadata(
        self, model_name: str, version: str = "", pin: str | None = None
    ) -> dict[str, Any]:
        return await views.model_metadata(self, model_name, version, pin)

    def model_config(
        self, model_name: str, version: str = "", pin: str | None = None
    ) -> dict[str, Any]:
        return views.model_config(self, model_name, version, pin)

    def model_statistics(self, model_name: str = "", version: str = "") -> list[dict[str, Any]]:
        return views.model_statistics(self, model_name, version)

    def runners(self) -> list[dict[str, Any]]:
        return self.catalog.runners()

    async def aclose(self) -> None:
        await self.catalog.watchdog.aclose()
        await self.catalog.aclose()
