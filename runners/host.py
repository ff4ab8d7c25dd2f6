"""Runner host: a KServe v2 gRPC server around one framework's engine.

The onnx and jax runners are this host plus an `Engine`; the host owns the wire
protocol (gateway.protocol, one copy of it), the repository scan, the port file and
the standard gRPC health service. Model calls run one at a time on one worker thread, so
a long call never stalls health checks; a call whose input shapes last ran in under
INLINE_BELOW_S runs on the event loop instead, when the thread is idle: for a small model
the hop to the thread and back (two wake-ups) costs more than the call itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway import eventloop
from gateway.config import ModelConfig, VariantConfig, load_repository
from gateway.errors import BadRequest, DeadlineExceeded, ModelNotFound
from gateway.protocol import signature, v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import generic_handler
from gateway.tensors import InferResponse, Tensor, as_bytes_array
from runners.framed_server import serve_framed
from runners.lifetime import die_with_parent

log = logging.getLogger("servegate.runner")

Predict = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]

DRAIN_S = 5.0  # on SIGTERM, how long calls in flight may take to finish
INLINE_BELOW_S = 0.0005  # a call this fast stalls the loop less than a thread hop costs
SHAPES_KEPT = 256  # recent call times are kept for this many (model, input shapes)


class Engine(Protocol):
    """One framework: loads an artifact into a callable from named inputs to named outputs."""

    kind: str  # the runner kind in model.yaml
    platform: str  # the v2 metadata platform string

    def load(self, model: ModelConfig, variant: VariantConfig, artifact: Path) -> Predict: ...

    def device(self) -> str: ...


@dataclass(frozen=True)
class Loaded:
    model: ModelConfig
    version: str
    predict: Predict


def load_models(engine: Engine, repository: Path) -> dict[tuple[str, str], Loaded]:
    """Every (model, version) with a variant for this engine whose artifact is built."""
    loaded: dict[tuple[str, str], Loaded] = {}
    for a in load_repository(repository).built_artifacts(engine.kind):
        loaded[(a.model.name, a.version)] = Loaded(
            a.model, a.version, engine.load(a.model, a.variant, a.path)
        )
        log.info("loaded %s v%s from %s", a.model.name, a.version, a.path)
    return loaded


class RunnerService:
    """The v2 methods over the loaded models."""

    def __init__(self, engine: Engine, models: dict[tuple[str, str], Loaded]) -> None:
        self.engine = engine
        self.models = models
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._in_thread = 0
        self._seconds: dict[tuple[object, ...], float] = {}
        """The last call's seconds by (model, version, input shapes): a shape never seen
        (a JAX compile, ORT's first run) and one that ran slowly go to the thread."""

    def _find(self, name: str, version: str) -> Loaded:
        if version:
            found = self.models.get((name, version))
        else:
            versions = sorted((v for (n, v) in self.models if n == name), key=int)
            found = self.models.get((name, versions[-1])) if versions else None
        if found is None:
            raise ModelNotFound(f"model '{name}' version '{version or 'latest'}' is not loaded")
        return found

    async def infer(self, msg: pb.ModelInferRequest) -> pb.ModelInferResponse:
        request = v2_grpc.request_from_pb(msg)
        loaded = self._find(request.model_name, request.model_version)
        sig = loaded.model.signature
        signature.check(request, sig)
        inputs = {t.name: t.data for t in request.inputs}
        deadline = _deadline(request.parameters.get("timeout"))
        result = await self._predict(loaded, inputs, deadline)
        wanted = [o.name for o in request.outputs] or [s.name for s in sig.outputs]
        outputs = []
        for name in wanted:
            spec = sig.output(name)
            if spec is None or name not in result:
                raise BadRequest(f"unknown output '{name}'")
            data = np.asarray(result[name])
            if spec.datatype == "BYTES":
                data = as_bytes_array(data)
            outputs.append(Tensor(name, spec.datatype, data))
        return v2_grpc.response_to_pb(
            InferResponse(
                model_name=request.model_name,
                model_version=loaded.version,
                id=request.id,
                outputs=tuple(outputs),
            )
        )

    async def _predict(
        self, loaded: Loaded, inputs: Mapping[str, np.ndarray], deadline: float | None
    ) -> Mapping[str, np.ndarray]:
        """One model call, on the loop when it is known to be fast and the thread is idle
        (so calls never overlap), else on the thread; its time decides the next one's."""
        key = (loaded.model.name, loaded.version, *(a.shape for a in inputs.values()))
        last = self._seconds.get(key)
        if last is not None and last < INLINE_BELOW_S and not self._in_thread:
            result, seconds = _timed_predict(loaded.predict, inputs, deadline)
        else:
            self._in_thread += 1
            try:
                result, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _timed_predict, loaded.predict, inputs, deadline
                )
            finally:
                self._in_thread -= 1
        if len(self._seconds) >= SHAPES_KEPT and key not in self._seconds:
            self._seconds.clear()
        self._seconds[key] = seconds
        return result

    def ready(self, req: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        try:
            self._find(req.name, req.version)
        except ModelNotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    def handlers(self) -> grpc.GenericRpcHandler:
        async def server_live(_: Any, __: Any) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        async def server_ready(_: Any, __: Any) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=True)

        async def server_metadata(_: Any, __: Any) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(
                name=f"servegate-{self.engine.kind}-runner", version="0.1.0"
            )

        async def model_ready(req: pb.ModelReadyRequest, _: Any) -> pb.ModelReadyResponse:
            return self.ready(req)

        async def model_metadata(req: pb.ModelMetadataRequest, _: Any) -> pb.ModelMetadataResponse:
            loaded = self._find(req.name, req.version)
            meta = pb.ModelMetadataResponse(
                name=req.name,
                versions=[v for (n, v) in self.models if n == req.name],
                platform=self.engine.platform,
            )
            for spec in loaded.model.signature.inputs:
                meta.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
            for spec in loaded.model.signature.outputs:
                meta.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
            return meta

        async def model_infer(req: pb.ModelInferRequest, _: Any) -> pb.ModelInferResponse:
            return await self.infer(req)

        return generic_handler(
            {
                "ServerLive": server_live,
                "ServerReady": server_ready,
                "ServerMetadata": server_metadata,
                "ModelReady": model_ready,
                "ModelMetadata": model_metadata,
                "ModelInfer": model_infer,
            },
            log,
        )


async def until_signalled() -> None:
    """Returns on SIGINT or SIGTERM: how every runner process waits while it serves."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _deadline(timeout_us: object) -> float | None:
    """The request's `timeout` parameter (microseconds, Triton's) as a monotonic deadline."""
    if isinstance(timeout_us, int | float) and not isinstance(timeout_us, bool) and timeout_us > 0:
        return time.monotonic() + timeout_us / 1e6
    return None


def _timed_predict(
    predict: Predict, inputs: Mapping[str, np.ndarray], deadline: float | None
) -> tuple[Mapping[str, np.ndarray], float]:
    """The call's outputs and seconds; work whose caller has given up while it queued is
    dropped."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("deadline passed while queued in the runner")
    started = time.perf_counter()
    result = predict(inputs)
    return result, time.perf_counter() - started


def write_port_file(path: Path, port: int) -> None:
    """Atomically, so a reader never sees a half-written port."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, path)


async def serve(
    engine: Engine,
    repository: Path,
    host: str,
    port: int,
    port_file: Path | None,
    socket_path: Path | None = None,
) -> None:
    models = load_models(engine, repository)
    service = RunnerService(engine, models)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((service.handlers(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    # The framed socket listens before the port file appears: ready means both are.
    framed = await serve_framed(socket_path, service) if socket_path is not None else None
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "%s runner serving %d model(s) on %s:%d%s (device: %s)",
        engine.kind,
        len(models),
        host,
        bound,
        f" and framed {socket_path}" if socket_path else "",
        engine.device(),
    )
    if port_file is not None:
        write_port_file(port_file, bound)
    await until_signalled()
    # Drain: health says NOT_SERVING first, then no new calls are taken and those in
    # flight finish (within DRAIN_S), then the process exits.
    log.info("%s runner draining", engine.kind)
    await health_servicer.enter_graceful_shutdown()
    await asyncio.gather(
        framed.aclose(DRAIN_S) if framed is not None else asyncio.sleep(0),
        server.stop(DRAIN_S),
    )


def main(engine_factory: Callable[[], Engine], argv: list[str] | None = None) -> None:
    """The command line every v2 runner shares: --repository, --host, --port, --port-file,
    --socket."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    parser.add_argument(
        "--socket", type=Path, help="Also serve the framed v2 protocol on this Unix socket."
    )
    args = parser.parse_args(argv)
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    eventloop.run(
        serve(engine_factory(), args.repository, args.host, args.port, args.port_file, args.socket)
    )
