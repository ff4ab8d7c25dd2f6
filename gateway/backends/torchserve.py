"""Backends: TorchServe's gRPC inference API, for the `pytorch` variants (TorchServe 0.12).

Tensors travel in our framing (protocol/torchserve_framing.py), which our handler inside
the .mar decodes: one frame per input in `input`, a bundle of output frames back in
`prediction`. TorchServe answers conditions with codes of its own, mapped here:

    RESOURCE_EXHAUSTED "Worker died."   the worker was killed mid-request   -> Unavailable
    UNAVAILABLE "Prediction failed"     a handler error (or no server)      -> Unavailable
    INTERNAL "Model not found: m"       not registered (or unloaded)        -> Unavailable
    INTERNAL "Model version: v does not exist"  (ModelVersionNotFoundException) -> Unavailable
    INVALID_ARGUMENT / 400              our handler refused the input       -> BadRequest

Readiness is the management API's worker status READY (TorchServe's Ping says Healthy
while no worker lives). With TorchServe's token authorization on (our launcher keeps it
on), every call carries `authorization: Bearer <key>`: the inference key for predictions,
the management key for worker status, read from the key_file.json TorchServe writes at
each start. A call refused with PERMISSION_DENIED (TorchServe restarted with new keys)
re-reads the file and is sent once more: a refused call was never run. The management
gRPC address is the inference port + 1 unless given: TorchServe's default layout
(7070/7071), kept by our launcher.

A dead worker fails its requests fast. On "Worker died", or when ready() reads a model
with no READY worker, every call still in flight to the model is cancelled and answers
Unavailable, and the variant is marked down: each call then re-reads the worker status (at
most every RECHECK_S) and answers Unavailable at once rather than queueing in TorchServe,
where requests for a worker that never returns wait without limit. TorchServe 0.12 also
drops, unanswered, the requests of a batch still being formed (batch_size > 1) when the
worker dies, and a worker may die while idle: so a call still waiting after WATCH_S reads
the worker status itself. Other errors (a bad version, a handler error) say nothing about
the worker and leave it be.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
from google.protobuf.descriptor import FileDescriptor

from gateway.backends.base import ChannelBackend, Clock, map_rpc_error, timeout_for
from gateway.backends.torchserve_keys import TorchServeKeys
from gateway.errors import GatewayError, Unavailable
from gateway.protocol import torchserve_framing as framing
from gateway.protocol.pb import torchserve_management_pb2 as mpb
from gateway.protocol.pb import torchserve_pb2 as pb
from gateway.tensors import DATATYPES, InferRequest, InferResponse, Tensor, decode_raw, encode_raw


def _path(file: FileDescriptor, service: str, method: str) -> str:
    """A method's wire path, from the proto's descriptor."""
    svc = file.services_by_name[service]
    return f"/{svc.full_name}/{svc.methods_by_name[method].name}"


_PREDICTIONS = _path(pb.DESCRIPTOR, "InferenceAPIsService", "Predictions")
_DESCRIBE = _path(mpb.DESCRIPTOR, "ManagementAPIsService", "DescribeModel")
RECHECK_S = 0.25  # while marked down, re-read the worker status at most this often
WATCH_S = 1.0  # a call still waiting after this long re-reads the worker status
RETRY_AFTER_S = 1.0
READY_TIMEOUT_S = 2.0


def management_endpoint_for(endpoint: str) -> str:
    """TorchServe's default layout: gRPC management on the gRPC inference port + 1."""
    host, _, port = endpoint.rpartition(":")
    return f"{host}:{int(port) + 1}"


def _to_wire(request: InferRequest, remote_model: str) -> pb.PredictionsRequest:
    return pb.PredictionsRequest(
        model_name=remote_model,
        model_version=request.model_version,
        input={
            t.name: framing.frame(t.datatype, t.shape, encode_raw(t.datatype, t.data))
            for t in request.inputs
        },
    )


def _from_wire(reply: pb.PredictionResponse, model_name: str) -> InferResponse:
    outputs = []
    for name, (datatype, shape, raw) in framing.unbundle(reply.prediction).items():
        if datatype not in DATATYPES:
            raise ValueError(f"output {name!r} has unknown datatype {datatype}")
        outputs.append(Tensor(name, datatype, decode_raw(datatype, shape, raw)))
    return InferResponse(model_name=model_name, outputs=tuple(outputs))


def _worker_died(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "Worker died" in (
        exc.details() or ""
    )


def _map_error(variant: str, exc: grpc.aio.AioRpcError) -> GatewayError:
    details = exc.details() or ""
    if _worker_died(exc) or (
        exc.code() == grpc.StatusCode.INTERNAL and "NotFoundException" in details
    ):
        return Unavailable(
            f"variant '{variant}': {exc.code().name}: {details}", retry_after=RETRY_AFTER_S
        )
    return map_rpc_error(variant, exc)


class TorchServeBackend(ChannelBackend):
    """Forwards to `remote_model` on TorchServe's gRPC inference API at `endpoint`."""

    protocol = "torchserve"

    def __init__(
        self,
        name: str,
        endpoint: str,
        remote_model: str,
        *,
        max_message_bytes: int,
        clock: Clock = time.monotonic,
        management_endpoint: str | None = None,
        key_file: Path | None = None,
    ) -> None:
        super().__init__(
            name, endpoint, remote_model, max_message_bytes=max_message_bytes, clock=clock
        )
        self.management_endpoint = management_endpoint or management_endpoint_for(endpoint)
        self._mgmt_channel = grpc.aio.insecure_channel(
            self.management_endpoint, options=self._options
        )
        self._predict = self._channel.unary_unary(
            _PREDICTIONS,
            request_serializer=pb.PredictionsRequest.SerializeToString,
            response_deserializer=pb.PredictionResponse.FromString,
        )
        self._describe = self._mgmt_channel.unary_unary(
            _DESCRIBE,
            request_serializer=mpb.DescribeModelRequest.SerializeToString,
            response_deserializer=mpb.ManagementResponse.FromString,
        )
        self._keys = TorchServeKeys(key_file)
        self._down = False
        self._checked_at = float("-inf")
        self._inflight: set[grpc.aio.UnaryUnaryCall] = set()
        self._abandoned: set[grpc.aio.UnaryUnaryCall] = set()

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        if self._down and not await self._recheck():
            raise Unavailable(
                f"variant '{self.name}': TorchServe has no live worker for '{self.remote_model}'",
                retry_after=RETRY_AFTER_S,
            )
        msg = _to_wire(request, self.remote_model)
        try:
            return await self._infer(msg, request, deadline)
        except _Refused:
            self._keys.reload()
            return await self._infer(msg, request, deadline)

    async def _infer(
        self, msg: pb.PredictionsRequest, request: InferRequest, deadline: float
    ) -> InferResponse:
        call = self._predict(
            msg,
            timeout=timeout_for(self.name, deadline, self._clock),
            metadata=self._keys.metadata("inference"),
        )
        self._inflight.add(call)
        try:
            reply = await self._watch(call)
        except grpc.aio.AioRpcError as exc:
            if _worker_died(exc):
                self._fail_inflight()
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED and self._keys.stale():
                raise _Refused from None
            raise _map_error(self.name, exc) from None
        except asyncio.CancelledError:
            if call not in self._abandoned:
                raise  # the caller's own cancellation
            raise Unavailable(
                f"variant '{self.name}': the TorchServe worker died while this request waited",
                retry_after=RETRY_AFTER_S,
            ) from None
        finally:
            self._inflight.discard(call)
            self._abandoned.discard(call)
        try:
            return _from_wire(reply, request.model_name)
        except ValueError as exc:
            raise GatewayError(
                f"variant '{self.name}' answered a malformed response: {exc}"
            ) from None

    async def _watch(self, call: grpc.aio.UnaryUnaryCall) -> pb.PredictionResponse:
        """Awaits `call`, re-reading the worker status every WATCH_S while it waits.

        So a call whose worker died without answering it fails within about WATCH_S
        (ready() cancels it), not at its deadline.
        """
        waiter = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=WATCH_S)
                if done:
                    reply: pb.PredictionResponse = waiter.result()
                    return reply
                if self._clock() - self._checked_at >= WATCH_S:
                    await self.ready()
        finally:
            if not waiter.done():  # our caller gave up
                call.cancel()

    def _fail_inflight(self) -> None:
        """The worker is gone: mark down, and fail every call still waiting on it now.

        TorchServe would keep them queued until a new worker runs (seconds, or forever if
        it never starts), and with batch_size > 1 it loses the jobs of a batch being formed
        when the worker dies (never answered). One worker per model (archive.py) means
        every call in flight waits on that worker.
        """
        self._down = True
        for call in self._inflight:
            self._abandoned.add(call)
            call.cancel()

    async def _recheck(self) -> bool:
        """While marked down: the worker status, read at most every RECHECK_S."""
        if self._clock() - self._checked_at < RECHECK_S:
            return False
        return await self.ready()

    async def ready(self) -> bool:
        """True when the model has a worker whose status is READY."""
        self._checked_at = self._clock()
        try:
            reply = await self._describe(
                mpb.DescribeModelRequest(model_name=self.remote_model),
                timeout=READY_TIMEOUT_S,
                metadata=self._keys.metadata("management"),
            )
            described = json.loads(reply.msg)
        except (grpc.aio.AioRpcError, ValueError) as exc:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _AUTH_FAILED:
                self._keys.reload()
            self._down = True  # unknown, so calls in flight keep their chance
            return False
        ready = any(
            w.get("status") == "READY"
            for model in (described if isinstance(described, list) else [described])
            if isinstance(model, dict)
            for w in model.get("workers", [])
            if isinstance(w, dict)
        )
        if ready:
            self._down = False
        else:
            self._fail_inflight()
        return ready

    async def aclose(self) -> None:
        await super().aclose()
        await self._mgmt_channel.close()


_AUTH_FAILED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


class _Refused(Exception):
    """TorchServe refused the key (it restarted and made new ones): reload and resend."""
