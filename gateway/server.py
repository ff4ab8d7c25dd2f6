"""Composition root: config -> backends -> dataplane -> api; uvicorn + grpc.aio on one loop.

`build_dataplane` wires every variant to its runner's endpoint; `Gateway` runs the HTTP
and gRPC front ends in one process, binds port 0 when asked, reports what it bound, and
stops both in order. Signals belong to the caller (the CLI), not to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Generator, Mapping
from pathlib import Path

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.api import compat_grpc
from gateway.api import grpc as grpc_api
from gateway.api.http import create_app
from gateway.auth import access_policy
from gateway.backends.base import Backend
from gateway.backends.connect import connect
from gateway.config import BatchingConfig, ModelConfig, Repository, Settings
from gateway.dataplane import DataPlane
from gateway.guards import GrpcAuthInterceptor
from gateway.lifecycle import Lifecycle, Relay, RepositoryControl
from gateway.protocol.reflection import pool as reflection_pool
from gateway.protocol.v2_service import SERVICE
from gateway.tls import exposure_warning, grpc_server_credentials, load_tls, uvicorn_ssl_kwargs

log = logging.getLogger(__name__)


def build_dataplane(
    settings: Settings,
    repository: Repository,
    runner_endpoints: Mapping[str, str],
    *,
    key_files: Mapping[str, Path] | None = None,
) -> DataPlane:
    """A DataPlane whose backends reach each variant's runner.

    A variant's own `endpoint` (containers) wins over the endpoint of the local runner of
    its kind (`servegate up`); a variant with neither answers 503 until one exists.
    `key_files`: runner kind -> TorchServe's key file (a local TorchServe's, or one a
    `servegate serve --runner-key-file` names).
    """
    key_files = key_files or {}

    def make(model: ModelConfig, name: str, endpoint: str, key_file: Path | None) -> Backend:
        variant = model.variants[name]
        own = variant.settings.get("key_file")  # an external TorchServe's
        return connect(
            f"{model.name}@{name}",
            variant,
            endpoint,
            model.name,
            max_message_bytes=_runner_message_limit(settings, model.batching),
            key_file=Path(own) if own else key_file,
        )

    backends: dict[tuple[str, str], Backend] = {}
    for model in repository.values():
        for name, variant in model.variants.items():
            endpoint = variant.endpoint or runner_endpoints.get(variant.runner)
            if endpoint is None:
                log.warning("variant %s@%s has no runner endpoint", model.name, name)
                continue
            backends[(model.name, name)] = make(
                model, name, endpoint, key_files.get(variant.runner)
            )
    return DataPlane(
        repository,
        backends,
        default_timeout_s=settings.default_timeout_s,
        max_concurrency=settings.max_concurrency,
        max_queued_bytes=settings.max_queued_bytes,
        hang_timeout_s=settings.hang_timeout_s,
        connect=make,
        reach={kind: (e, key_files.get(kind)) for kind, e in runner_endpoints.items()},
    )


def _runner_message_limit(settings: Settings, batching: BatchingConfig | None) -> int:
    """A batch carries up to max_batch_size requests, each within the body limit."""
    rows = batching.max_batch_size if batching is not None else 1
    return min(settings.max_body_bytes * rows, 2**31 - 1)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# grpc.health.v1 service names the gateway answers for ("" is the server as a whole).
HEALTH_SERVICES = (
    "",
    "inference.GRPCInferenceService",
    "tensorflow.serving.PredictionService",
    "org.pytorch.serve.grpc.inference.InferenceAPIsService",
)


class Gateway:
    """The HTTP and gRPC front ends of one DataPlane, in the running event loop."""

    def __init__(
        self,
        dataplane: DataPlane,
        settings: Settings,
        lifecycle: RepositoryControl | None = None,
        *,
        relay: Relay | None = None,
        reuse_port: bool = False,
    ) -> None:
        """`relay`: where the admin routes' changes go (a fleet worker's primary), if not
        to `dataplane` itself; `reuse_port`: bind with SO_REUSEPORT (a fleet's workers
        share their ports)."""
        self.dataplane = dataplane
        self.settings = settings
        self.lifecycle = lifecycle or Lifecycle.local(
            dataplane, settings.repository, drain_s=settings.shutdown_grace_s
        )
        self.relay = relay
        self.reuse_port = reuse_port
        self.http_port = 0
        self.grpc_port = 0
        self._uvicorn: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._stopping = False

    async def start(self, timeout: float = 10.0) -> None:
        """Binds and starts both front ends; returns once both accept connections.

        Keys and certificates are checked first: a bad file fails before any port opens.
        """
        s = self.settings
        policy = access_policy(
            s.api_keys_file,
            infer_keys=s.infer_keys.get_secret_value(),
            admin_keys=s.admin_keys.get_secret_value(),
            health=s.health_scope,
            metrics=s.metrics_scope,
        )
        tls = load_tls(s.tls_certfile, s.tls_keyfile, s.tls_client_ca)
        warning = exposure_warning(s.host, policy.enabled, tls is not None)
        if warning:
            log.warning(warning)
        self.dataplane.start()
        self.dataplane.live_check = self.live
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((s.host, s.http_port))
        self.http_port = sock.getsockname()[1]
        app = create_app(
            self.dataplane,
            max_body_bytes=s.max_body_bytes,
            body_timeout_s=s.body_timeout_s,
            policy=policy,
            lifecycle=self.lifecycle,
            relay=self.relay,
        )
        config = uvicorn.Config(
            app,
            log_level=s.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, math.ceil(s.shutdown_grace_s)),
            **uvicorn_ssl_kwargs(tls),
        )
        self._uvicorn = _Uvicorn(config)
        self._http_task = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))

        self._grpc = grpc.aio.server(
            interceptors=[GrpcAuthInterceptor(policy)] if policy.enabled else None,
            options=[
                ("grpc.max_receive_message_length", s.max_body_bytes),
                ("grpc.max_send_message_length", s.max_body_bytes),
                ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ],
        )
        self._grpc.add_generic_rpc_handlers(
            (
                grpc_api.servicer(self.dataplane, self.lifecycle),
                grpc_api.stream_servicer(self.dataplane),
                *compat_grpc.handlers(self.dataplane),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        reflection.enable_server_reflection(
            (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._grpc,
            pool=reflection_pool(),
        )
        address = f"{s.host}:{s.grpc_port}"
        self.grpc_port = (
            self._grpc.add_secure_port(address, grpc_server_credentials(tls))
            if tls is not None
            else self._grpc.add_insecure_port(address)
        )
        await self._grpc.start()
        for service in HEALTH_SERVICES:
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

        until = time.monotonic() + timeout
        while not self._uvicorn.started:
            if self._http_task.done():
                await self._http_task  # re-raises the bind or startup error
                raise RuntimeError("HTTP server stopped during start-up")
            if time.monotonic() > until:
                raise TimeoutError("HTTP server did not start in time")
            await asyncio.sleep(0.01)

    def live(self) -> bool:
        """The gateway's own health: both front ends are serving (not stopping)."""
        return (
            not self._stopping
            and self._http_task is not None
            and not self._http_task.done()
            and self._grpc is not None
        )

    async def drain(self) -> None:
        """Readiness goes NOT_SERVING (HTTP, v2 gRPC and grpc.health.v1 for every service
        name); requests keep being served."""
        self.dataplane.draining = True
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace: float | None = None) -> None:
        """Drains, keeps accepting for drain_delay_s, then stops accepting and lets the
        requests in flight on both front ends finish within `grace`; closes backends."""
        grace = self.settings.shutdown_grace_s if grace is None else grace
        await self.drain()
        if self.settings.drain_delay_s > 0:
            await asyncio.sleep(self.settings.drain_delay_s)
        self._stopping = True
        await asyncio.gather(self._stop_http(), self._stop_grpc(grace))
        await self.dataplane.aclose()

    async def _stop_http(self) -> None:
        if self._uvicorn is not None and self._http_task is not None:
            self._uvicorn.should_exit = True
            await self._http_task

    async def _stop_grpc(self, grace: float) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace)
