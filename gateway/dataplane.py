"""DataPlane: the one object both front ends call. Admits, validates, picks a variant, forwards.

api/http.py and api/grpc.py only translate bytes to InferRequest and back; everything
a request means (admission, model lookup, version, signature check, variant choice,
deadline, what reaches the runner, output selection) happens here, once for both
protocols. Each variant's machinery (backend, batcher, runner status) is a ServedVariant.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.admission import Admission, Ticket
from gateway.backends.base import Backend
from gateway.config import ModelConfig, Repository
from gateway.errors import BadRequest, GatewayError, ModelNotFound, Unavailable
from gateway.health import RunnerState, RunnerStatus, Watchdog
from gateway.metrics import Metrics
from gateway.protocol import model_config, signature
from gateway.protocol.classification import classify
from gateway.protocol.grpc_errors import internal
from gateway.router import selection
from gateway.statistics import Statistics, VariantStats
from gateway.tensors import InferRequest, InferResponse
from gateway.variant import ServedVariant

log = logging.getLogger(__name__)

# Request parameters the gateway acts on itself; they never reach a runner.
CONSUMED = frozenset({selection.PIN_PARAMETER, "timeout", "binary_data_output"})

EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "servegate_variants",
)

MAX_TIMEOUT_S = 24 * 3600.0
"""A deadline further away than this means none in particular: it is cut to this."""

Connect = Callable[[ModelConfig, str, str, Path | None], Backend]
"""(model, variant name, endpoint, key file) -> a backend client: how a moved runner
(a restart on new ports, a standby taking over) is reached."""


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A resolved request target: the model, its version and the chosen variant."""

    model: ModelConfig
    version: str
    variant: str


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
    ) -> None:
        self.repository = repository
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock = clock
        self.admission = Admission(max_queued_bytes=max_queued_bytes)
        self.statistics = Statistics()
        self.watchdog = Watchdog(hang_timeout_s=hang_timeout_s, on_stuck=self._stuck, clock=clock)
        self.on_stuck: Callable[[str, str], None] | None = None
        """Told (runner kind, reason) when a local runner is found hung: the supervisor."""
        self.draining = False
        self.live_check: Callable[[], bool] = lambda: True
        """The gateway's own health (its front ends), set by whoever serves this dataplane."""
        self._default_timeout_s = default_timeout_s
        self._max_concurrency = max_concurrency
        self._connect = connect
        self._reach = dict(reach or {})
        """runner kind -> (endpoint, key file): how its local runner is reached now."""
        self._restarts: dict[str, int] = {}
        self._runners: dict[str, RunnerStatus] = {}
        self._variants: dict[tuple[str, str], ServedVariant] = {}
        for (model, variant), backend in backends.items():
            self._add(repository[model], variant, backend)
        self.metrics.watch_load(self._inflight, lambda: self.admission.queued_bytes)

    def _add(self, model: ModelConfig, variant: str, backend: Backend) -> ServedVariant:
        served = ServedVariant(
            model, variant, backend,
            metrics=self.metrics, clock=self.clock, statistics=self.statistics,
        )  # fmt: skip
        self.watchdog.watch(served.key, served.probe, served.progress)
        self._variants[(model.name, variant)] = served
        return served

    def install(
        self,
        repository: Repository,
        model: ModelConfig,
        endpoints: Mapping[str, tuple[str, Path | None]],
    ) -> list[ServedVariant]:
        """Serves `model` (as `repository` now has it) from here on, in one step: requests
        that resolve after this see the new configuration and variants; the ones already
        on their way finish on the old variants, returned for the caller to drain.

        `endpoints`: runner kind -> (endpoint, key file) of fresh local runners to reach;
        other kinds are reached where they are now; a variant's own endpoint wins.
        """
        if self._connect is None:
            raise Unavailable("this gateway cannot load models (no way to reach runners)")
        fresh = {}
        for name, variant in model.variants.items():
            endpoint, key_file = {**self._reach, **endpoints}.get(variant.runner, ("", None))
            endpoint = variant.endpoint or endpoint
            if endpoint:
                fresh[name] = self._connect(model, name, endpoint, key_file)
        old = self.remove(model.name)
        self.repository = repository
        for name, backend in fresh.items():
            self._add(model, name, backend)
        return old

    def remove(self, name: str) -> list[ServedVariant]:
        """Stops serving model `name` (404 from here on); returns its variants to drain."""
        old = [s for (m, _), s in self._variants.items() if m == name]
        for served in old:
            del self._variants[(name, served.name)]
            self.watchdog.forget(served.key)
        return old

    def start(self) -> None:
        """Starts the background work (the watchdog); call from the serving event loop."""
        self.watchdog.start()

    def _inflight(self) -> dict[str, int]:
        return {s.key: self.admission.inflight(s.key) for s in self._variants.values()}

    def resolve(self, model_name: str, version: str = "", *pins: str | None) -> Target:
        """Looks up model, version and variant; 404 for any unknown one."""
        name, alias_pin = selection.split_alias(model_name)
        model = self.repository.get(name)
        if model is None:
            raise ModelNotFound(f"unknown model '{name}'")
        if version and version not in model.versions:
            raise ModelNotFound(
                f"model '{name}' has no version '{version}' (versions: {list(model.versions)})"
            )
        variant = selection.choose(model, alias_pin, *pins)
        return Target(model, version or model.latest_version, variant)

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
            self.metrics.requests.labels(model, variant, protocol, type(exc).__name__).inc()
            raise
        return ticket

    def hold(self, nbytes: int) -> Ticket:
        """Admission of `nbytes` of request before it is decoded (413 or 429)."""
        return self.admission.hold(nbytes)

    def _enter(self, ticket: Ticket, target: Target) -> None:
        served = self._served(target)
        limits = target.model.limits
        limit = limits.max_concurrency if limits is not None else self._max_concurrency
        ticket.enter(served.key, limit, served.retry_after)

    async def infer(
        self,
        request: InferRequest,
        *,
        deadline: float | None = None,
        pin: str | None = None,
        protocol: str = "",
        ticket: Ticket | None = None,
    ) -> InferResponse:
        """Validates `request`, sends it to the chosen variant, and answers in the client's names.

        The deadline is the earliest of the caller's own (gRPC's) and the request's
        `timeout` parameter (microseconds, Triton's convention); the model's default only
        when the caller gave neither. `ticket` is the admission the front end took before
        decoding; without one, the request is admitted here. `protocol` (http or grpc)
        only labels the metrics.
        """
        start = self.clock()
        model, variant = "", ""  # labels only once known: never a client's free text
        target: Target | None = None
        own = ticket is None
        if ticket is None:
            ticket = self.hold(sum(t.data.nbytes for t in request.inputs))
        try:
            target = self.resolve(
                request.model_name, request.model_version, pin, _param_pin(request)
            )
            model, variant = target.model.name, target.variant
            self._enter(ticket, target)
            response = await self._infer(request, target, deadline)
        except GatewayError as exc:
            self._count(target, protocol, type(exc).__name__, start)
            raise
        except Exception as exc:
            # A bug or an unforeseen backend failure: logged with an error id, answered as
            # a 500 that carries only that id.
            self._count(target, protocol, "GatewayError", start)
            raise internal(log, f"serving {model}@{variant}") from exc
        finally:
            if own:
                ticket.release()
        self._count(target, protocol, "ok", start)
        return response

    def _count(self, target: Target | None, protocol: str, outcome: str, start: float) -> None:
        """One answered request in the metrics and, once its variant is known, the
        statistics extension's success/fail counters."""
        took = self.clock() - start
        model, variant = (target.model.name, target.variant) if target else ("", "")
        self.metrics.requests.labels(model, variant, protocol, outcome).inc()
        if outcome == "ok":
            self.metrics.request_seconds.labels(model, variant, protocol).observe(took)
        if target is not None:
            key = (model, target.version, variant)
            self.statistics.request(key, outcome == "ok", took)

    async def _infer(
        self, request: InferRequest, target: Target, deadline: float | None
    ) -> InferResponse:
        signature.check(request, target.model.signature)
        deadline = self._deadline(request, target.model, deadline)
        served = self._served(target)
        wanted = served.config.kind.parameters
        forwarded = dataclasses.replace(
            request,
            model_version=target.version,
            outputs=(),  # every output comes back; the gateway picks what was asked for
            parameters={
                k: v
                for k, v in request.parameters.items()
                if k not in CONSUMED and (wanted is None or k in wanted)
            },
        )
        response = await served.infer(forwarded, deadline)
        outputs = response.outputs
        if request.outputs:
            asked = {o.name: o.classification for o in request.outputs}
            outputs = tuple(
                classify(t, asked[t.name]) if asked[t.name] else t
                for t in outputs
                if t.name in asked
            )
        return InferResponse(
            model_name=request.model_name,
            model_version=target.version,
            id=request.id,
            outputs=outputs,
            parameters={selection.PIN_PARAMETER: target.variant},
        )

    def _deadline(self, request: InferRequest, model: ModelConfig, given: float | None) -> float:
        now = self.clock()
        own = _timeout_s(request.parameters.get("timeout"))
        if given is None and own is None:
            seconds = (
                model.default_timeout_ms / 1000
                if model.default_timeout_ms is not None
                else self._default_timeout_s
            )
            return now + seconds
        candidates = [d for d in (given, None if own is None else now + own) if d is not None]
        return min(min(candidates), now + MAX_TIMEOUT_S)

    def served(self, model: str, variant: str) -> ServedVariant | None:
        """One variant's machinery (backend, batcher, runner status), if it is served."""
        return self._variants.get((model, variant))

    def _served(self, target: Target) -> ServedVariant:
        served = self._variants.get((target.model.name, target.variant))
        if served is None:
            raise Unavailable(
                f"variant '{target.variant}' of model '{target.model.name}' is not served"
            )
        return served

    def runner_status(self, status: RunnerStatus) -> None:
        """The supervisor's word on a local runner: every variant it serves follows it, and
        reaches it at its (new) endpoint once it is READY again."""
        self._runners[status.kind] = status
        if status.endpoint:
            self._reach[status.kind] = (status.endpoint, status.key_file)
        up = status.state is RunnerState.READY
        self.metrics.runner_up.labels(status.kind).set(1 if up else 0)
        counted = self._restarts.get(status.kind, 0)
        if status.restarts > counted:
            self.metrics.runner_restarts.labels(status.kind).inc(status.restarts - counted)
            self._restarts[status.kind] = status.restarts
        for served in self._variants.values():
            if served.config.runner != status.kind or served.config.endpoint:
                continue
            served.status = status
            moved = getattr(served.backend, "endpoint", status.endpoint) != status.endpoint
            if up and moved and status.endpoint and self._connect is not None:
                log.warning("variant %s: its runner moved to %s", served.key, status.endpoint)
                served.repoint(
                    self._connect(served.model, served.name, status.endpoint, status.key_file)
                )

    def runners(self) -> list[dict[str, Any]]:
        """The local runners as the supervisor last reported them (an admin's view)."""
        return [
            {
                "kind": st.kind,
                "state": st.state.value,
                "reason": st.reason,
                "restarts": st.restarts,
                "pid": st.pid,
                "endpoint": st.endpoint,
                "standby": st.standby,
            }
            for st in self._runners.values()
        ]

    def _stuck(self, key: str, reason: str) -> None:
        model, _, variant = key.partition("@")
        served = self._variants.get((model, variant))
        if served is None:
            return
        self.metrics.variant_stuck.labels(model, variant).inc()
        if not served.config.endpoint and self.on_stuck is not None:
            self.on_stuck(served.config.runner, f"variant {key}: {reason}")

    async def variant_ready(self, model: str, variant: str) -> bool:
        served = self._variants.get((model, variant))
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
        for model in self.repository.values():
            if not await self.variant_ready(model.name, model.routing.default):
                return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "servegate", "version": __version__, "extensions": list(EXTENSIONS)}

    async def _variant_state(self, model: ModelConfig, name: str) -> dict[str, str]:
        served = self._variants.get((model.name, name))
        down = served.unavailable() if served is not None else None
        if served is not None and served.status is not None and down is not None:
            return {"state": served.status.state.value, "reason": served.status.reason}
        if await self.variant_ready(model.name, name):
            return {"state": "READY"}
        return {"state": "UNAVAILABLE", "reason": "its runner does not answer ready"}

    async def model_metadata(
        self, model_name: str, version: str = "", pin: str | None = None
    ) -> dict[str, Any]:
        """v2 model metadata, plus the variants with their runner and state."""
        target = self.resolve(model_name, version, pin)
        model = target.model
        sig = model.signature
        variants = [
            {
                "name": name,
                "runner": v.runner,
                "protocol": v.protocol,
                "platform": v.kind.platform,
                **await self._variant_state(model, name),
            }
            for name, v in model.variants.items()
        ]
        return {
            "name": model_name,
            "versions": list(model.versions),
            "platform": model.variants[target.variant].kind.platform,
            "inputs": [s.model_dump() | {"shape": list(s.shape)} for s in sig.inputs],
            "outputs": [s.model_dump() | {"shape": list(s.shape)} for s in sig.outputs],
            "parameters": {"default_variant": model.routing.default, "variant": target.variant},
            "variants": variants,
        }

    def model_config(
        self, model_name: str, version: str = "", pin: str | None = None
    ) -> dict[str, Any]:
        """Triton's model configuration of the model as its chosen variant serves it."""
        target = self.resolve(model_name, version, pin)
        return model_config.model_config(target.model, model_name, target.variant)

    def model_statistics(self, model_name: str = "", version: str = "") -> list[dict[str, Any]]:
        """Triton's model_stats: `digits` sums its variants, `digits@jax` is that variant
        alone, no name lists every model and then every variant."""
        if not model_name:
            return self.statistics.report()
        name, alias = selection.split_alias(model_name)
        target = self.resolve(model_name, version)
        found = self.statistics.report(name, version, target.variant if alias else None)
        return found or [VariantStats().doc(model_name, version or target.version)]

    async def aclose(self) -> None:
        await self.watchdog.aclose()
        for served in self._variants.values():
            await served.aclose()


def _param_pin(request: InferRequest) -> str | None:
    value = request.parameters.get(selection.PIN_PARAMETER)
    return value if isinstance(value, str) else None


def _timeout_s(value: object) -> float | None:
    """Triton's `timeout` parameter (microseconds) in seconds; None when absent or 0.
    Anything but a finite non-negative number is a bad request."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest("parameter 'timeout' must be a number of microseconds")
    if value < 0:
        raise BadRequest("parameter 'timeout' must not be negative")
    if value > MAX_TIMEOUT_S * 1e6:
        return MAX_TIMEOUT_S
    return value / 1e6 if value else None
