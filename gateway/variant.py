"""Variant: the serving machinery of one model variant, between the dataplane and its runner.

A ServedVariant owns its backend (swapped, never patched, when the runner moves), its
batcher, the watchdog's view of its runner calls, and what the supervisor last said about
its runner. The dataplane hands it requests that are already validated and trimmed to
what the runner reads; it answers fast with 503 while its runner restarts or has failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from gateway.backends.base import Backend
from gateway.batching import Batcher
from gateway.config import ModelConfig, VariantConfig
from gateway.errors import DeadlineExceeded, GatewayError, Unavailable
from gateway.health import Progress, RunnerState, RunnerStatus
from gateway.metrics import Metrics
from gateway.statistics import Statistics
from gateway.tensors import DATATYPES, InferRequest, InferResponse, Tensor

log = logging.getLogger("servegate.variant")

Clock = Callable[[], float]

RETRY_WHILE_RESTARTING_S = 1.0


def probe_request(model: ModelConfig) -> InferRequest:
    """The smallest request the signature allows: zeros (empty strings), free dims 1."""
    inputs = []
    for spec in model.signature.inputs:
        shape = tuple(1 if d == -1 else d for d in spec.shape)
        dtype = DATATYPES[spec.datatype].dtype
        if spec.datatype == "BYTES":
            data = np.full(shape, b"", dtype=object)
        else:
            data = np.zeros(shape, dtype)
        inputs.append(Tensor(spec.name, spec.datatype, data))
    return InferRequest(model.name, tuple(inputs), model_version=model.latest_version)


class ServedVariant:
    """One (model, variant): backend, batcher, in-flight accounting and runner status."""

    def __init__(
        self,
        model: ModelConfig,
        name: str,
        backend: Backend,
        *,
        metrics: Metrics,
        clock: Clock,
        statistics: Statistics | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.key = f"{model.name}@{name}"
        self.config: VariantConfig = model.variants[name]
        self.backend = backend
        self.metrics = metrics
        self.clock = clock
        self.progress = Progress()
        self.status: RunnerStatus | None = None
        self.latency_s = 0.0  # EWMA of answered runner calls, for retry hints
        self.statistics = statistics if statistics is not None else Statistics()
        self.batcher: Batcher | None = None
        if model.batching is not None:
            self.batcher = Batcher(
                self.key, model.batching, self._call, clock=clock, observe=self._observe
            )
        self._batch_rows = metrics.batch_rows.labels(model.name, name)
        self._backend_seconds = metrics.backend_seconds.labels(model.name, name)
        self._retired: set[asyncio.Task[None]] = set()
        self.active = 0  # requests in this variant now (a replaced one drains to 0)
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def retry_after(self) -> float:
        """A retry hint from recent runner latency (at least 50 ms)."""
        return max(0.05, 4 * self.latency_s)

    def unavailable(self) -> Unavailable | None:
        """Why the variant cannot serve now, from the supervisor's last word on its runner."""
        status = self.status
        if status is None or status.state is RunnerState.READY:
            return None
        if status.state is RunnerState.FAILED:
            return Unavailable(f"variant '{self.key}': its runner has failed ({status.reason})")
        return Unavailable(
            f"variant '{self.key}': its runner is {status.state.lower()} ({status.reason})",
            retry_after=RETRY_WHILE_RESTARTING_S,
        )

    async def infer(self, request: InferRequest, deadline: float) -> InferResponse:
        """Sends `request` (through the batcher when batching is on) until `deadline`."""
        down = self.unavailable()
        if down is not None:
            raise down
        self.active += 1
        self._idle.clear()
        try:
            if self.batcher is not None:
                return await self.batcher.submit(request, deadline)
            return await self._call(request, deadline)
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Waits until no request is in this variant (up to `timeout`); True if none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _observe(
        self, version: str, rows: int, queued: list[float], stack: float, call: float, split: float
    ) -> None:
        key = (self.model.name, version, self.name)
        self.statistics.execution(key, rows, queued, stack, call, split)

    async def _call(self, request: InferRequest, deadline: float) -> InferResponse:
        """One runner call: timed, counted, and reported to the watchdog (and, unbatched,
        to the statistics: the batcher reports its own calls)."""
        rows = request.inputs[0].shape[0] if request.inputs[0].shape else 1
        self._batch_rows.observe(rows)
        start = self.clock()
        call = self.progress.begin(start)
        answered = False
        try:
            response = await self.backend.infer(request, deadline=deadline)
            answered = True
            if self.batcher is None:
                self._observe(request.model_version, rows, [0.0], 0.0, self.clock() - start, 0.0)
            return response
        except DeadlineExceeded:
            raise
        except GatewayError:
            answered = True  # the runner (or its absence) answered: not a hang
            raise
        finally:
            self.progress.end(call, answered=answered)
            took = self.clock() - start
            self._backend_seconds.observe(took)
            if answered:
                self.latency_s = 0.8 * self.latency_s + 0.2 * took

    async def probe(self, deadline: float) -> InferResponse:
        """The watchdog's request: straight to the backend, past batcher and accounting."""
        return await self.backend.infer(probe_request(self.model), deadline=deadline)

    async def ready(self) -> bool:
        if self.unavailable() is not None:
            return False
        return await self.backend.ready()

    def repoint(self, backend: Backend) -> None:
        """Sends from now on to `backend`; the old one closes once its calls are done."""
        old, self.backend = self.backend, backend
        task = asyncio.create_task(_close_later(old), name=f"retire {self.key}")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
        await self.backend.aclose()
        for task in list(self._retired):
            task.cancel()


async def _close_later(backend: Backend, after_s: float = 30.0) -> None:
    """Closes a replaced backend once calls that were already on it have had their time."""
    try:
        await asyncio.sleep(after_s)
    finally:
        await backend.aclose()
