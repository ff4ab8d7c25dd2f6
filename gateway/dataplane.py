"""DataPlane: the one object both front ends call. Validates, picks a variant, forwards.

api/http.py and api/grpc.py only translate bytes to InferRequest and back; everything
a request means (model lookup, version, signature check, variant choice, deadline,
output selection) happens here, once for both protocols.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway import __version__
from gateway.backends.base import Backend
from gateway.batching import Batcher, Send
from gateway.config import ModelConfig, Repository
from gateway.errors import GatewayError, ModelNotFound, Unavailable
from gateway.metrics import Metrics
from gateway.protocol import signature
from gateway.router import selection
from gateway.tensors import InferRequest, InferResponse

log = logging.getLogger(__name__)

# Request parameters the gateway acts on itself; the rest go on to the runner.
CONSUMED = frozenset({selection.PIN_PARAMETER, "timeout", "binary_data_output"})

EXTENSIONS = ("binary_tensor_data", "servegate_variants")

PLATFORMS: Mapping[str, str] = {
    "onnx": "onnx_onnxv1",
    "jax": "jax_export",
    "torchserve": "pytorch_torchscript",
    "tfserving": "tensorflow_savedmodel",
    "v2": "v2",
}


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
    ) -> None:
        self.repository = repository
        self._backends = dict(backends)
        self.metrics = metrics if metrics is not None else Metrics()
        self._default_timeout_s = default_timeout_s
        self.clock = clock
        # What a request is handed to: the variant's batcher, or straight to the backend.
        self._senders: dict[tuple[str, str], Send] = {}
        self._batchers: list[Batcher] = []
        for (model, variant), backend in self._backends.items():
            send = self._recorded(model, variant, backend)
            cfg = repository[model].batching
            if cfg is not None:
                batcher = Batcher(f"{model}@{variant}", cfg, send, clock=clock)
                self._batchers.append(batcher)
                send = batcher.submit
            self._senders[(model, variant)] = send

    def _recorded(self, model: str, variant: str, backend: Backend) -> Send:
        """The backend's infer, timed and counted per runner call (one per batch)."""

        async def send(request: InferRequest, deadline: float) -> InferResponse:
            self.metrics.batch_rows.labels(model, variant).observe(
                request.inputs[0].shape[0] if request.inputs[0].shape else 1
            )
            start = self.clock()
            try:
                return await backend.infer(request, deadline=deadline)
            finally:
                self.metrics.backend_seconds.labels(model, variant).observe(self.clock() - start)

        return send

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

    async def infer(
        self,
        request: InferRequest,
        *,
        deadline: float | None = None,
        pin: str | None = None,
        protocol: str = "",
    ) -> InferResponse:
        """Validates `request`, sends it to the chosen variant, and answers in the client's names.

        The deadline is the earliest of the caller's (gRPC), the request's `timeout`
        parameter (microseconds, Triton's convention) and the model's default. `protocol`
        (http or grpc) only labels the metrics.
        """
        start = self.clock()
        model, variant = "", ""  # labels only once known: never a client's free text
        try:
            target = self.resolve(
                request.model_name, request.model_version, pin, _param_pin(request)
            )
            model, variant = target.model.name, target.variant
            response = await self._infer(request, target, deadline)
        except GatewayError as exc:
            self.metrics.requests.labels(model, variant, protocol, type(exc).__name__).inc()
            raise
        except Exception as exc:
            # A bug or an unforeseen backend failure: logged here, answered as a 500.
            log.exception("unexpected error serving %s@%s", model, variant)
            self.metrics.requests.labels(model, variant, protocol, "GatewayError").inc()
            raise GatewayError(f"internal error: {type(exc).__name__}: {exc}") from exc
        self.metrics.requests.labels(model, variant, protocol, "ok").inc()
        self.metrics.request_seconds.labels(model, variant, protocol).observe(self.clock() - start)
        return response

    async def _infer(
        self, request: InferRequest, target: Target, deadline: float | None
    ) -> InferResponse:
        signature.check(request, target.model.signature)
        deadline = self._deadline(request, target.model, deadline)
        send = self._sender(target)
        forwarded = dataclasses.replace(
            request,
            model_version=target.version,
            parameters={k: v for k, v in request.parameters.items() if k not in CONSUMED},
        )
        response = await send(forwarded, deadline)
        outputs = response.outputs
        if request.outputs:
            wanted = {o.name for o in request.outputs}
            outputs = tuple(t for t in outputs if t.name in wanted)
        return InferResponse(
            model_name=request.model_name,
            model_version=target.version,
            id=request.id,
            outputs=outputs,
            parameters={selection.PIN_PARAMETER: target.variant},
        )

    def _deadline(self, request: InferRequest, model: ModelConfig, given: float | None) -> float:
        timeout = request.parameters.get("timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            seconds = timeout / 1e6
        elif model.default_timeout_ms is not None:
            seconds = model.default_timeout_ms / 1000
        else:
            seconds = self._default_timeout_s
        own = self.clock() + seconds
        return own if given is None else min(given, own)

    def _sender(self, target: Target) -> Send:
        send = self._senders.get((target.model.name, target.variant))
        if send is None:
            raise Unavailable(
                f"variant '{target.variant}' of model '{target.model.name}' is not served"
            )
        return send

    async def variant_ready(self, model: str, variant: str) -> bool:
        backend = self._backends.get((model, variant))
        ready = backend is not None and await backend.ready()
        self.metrics.variant_up.labels(model, variant).set(1 if ready else 0)
        return ready

    async def model_ready(self, model_name: str, version: str = "", pin: str | None = None) -> bool:
        target = self.resolve(model_name, version, pin)
        return await self.variant_ready(target.model.name, target.variant)

    async def server_ready(self) -> bool:
        """Ready when every model's default variant is."""
        for model in self.repository.values():
            if not await self.variant_ready(model.name, model.routing.default):
                return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "servegate", "version": __version__, "extensions": list(EXTENSIONS)}

    async def model_metadata(
        self, model_name: str, version: str = "", pin: str | None = None
    ) -> dict[str, Any]:
        """v2 model metadata, plus the variants with their runner and state."""
        target = self.resolve(model_name, version, pin)
        model = target.model
        sig = model.signature
        variants = []
        for name, v in model.variants.items():
            ready = await self.variant_ready(model.name, name)
            variants.append(
                {
                    "name": name,
                    "runner": v.runner,
                    "protocol": v.protocol,
                    "platform": PLATFORMS[v.runner],
                    "state": "READY" if ready else "UNAVAILABLE",
                }
            )
        return {
            "name": model_name,
            "versions": list(model.versions),
            "platform": PLATFORMS[model.variants[target.variant].runner],
            "inputs": [s.model_dump() | {"shape": list(s.shape)} for s in sig.inputs],
            "outputs": [s.model_dump() | {"shape": list(s.shape)} for s in sig.outputs],
            "parameters": {"default_variant": model.routing.default, "variant": target.variant},
            "variants": variants,
        }

    async def aclose(self) -> None:
        for batcher in self._batchers:
            await batcher.aclose()
        for backend in self._backends.values():
            await backend.aclose()


def _param_pin(request: InferRequest) -> str | None:
    value = request.parameters.get(selection.PIN_PARAMETER)
    return value if isinstance(value, str) else None
