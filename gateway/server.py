"""Composition root: config -> backends -> dataplane -> api; uvicorn + grpc.aio on one loop.

`build_dataplane` wires every variant to its runner's endpoint; `Gateway` runs the HTTP
and gRPC front ends in one process, binds port 0 when asked, reports what it bound, and
stops both in order. Signals belong to the caller (the CLI), not to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator, Mapping

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.api import grpc as grpc_api
from gateway.api.http import create_app
from gateway.backends.base import Backend
from gateway.backends.connect import connect
from gateway.config import BatchingConfig, Repository, Settings
from gateway.dataplane import DataPlane

log = logging.getLogger(__name__)


def build_dataplane(
    settings: Settings, repository: Repository, runner_endpoints: Mapping[str, str]
) -> DataPlane:
    """A DataPlane whose backends reach each variant's runner.

    A variant's own `endpoint` (containers) wins over the endpoint of the local runner of
    its kind (`servegate up`); a variant with neither answers 503 until one exists.
    """
    backends: dict[tuple[str, str], Backend] = {}
    for model in repository.values():
        for name, variant in model.variants.items():
            endpoint = variant.endpoint or runner_endpoints.get(variant.runner)
            if endpoint is None:
                log.warning("variant %s@%s has no runner endpoint", model.name, name)
                continue
            backends[(model.name, name)] = connect(
                f"{model.name}@{name}",
                variant,
                endpoint,
                model.name,
                max_message_bytes=_runner_message_limit(settings, model.batching),
            )
    return DataPlane(repository, backends, default_timeout_s=settings.default_timeout_s)


def _runner_message_limit(settings: Settings, batching: BatchingConfig | None) -> int:
    """A batch carries up to max_batch_size requests, each within the body limit."""
    rows = batching.max_batch_size if batching is not None else 1
    return min(settings.max_body_bytes * rows, 2**31 - 1)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Gateway:
    """The HTTP and gRPC front ends of one DataPlane, in the running event loop."""

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.http_port = 0
        self.grpc_port = 0
        self._uvicorn: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Binds and starts both front ends; returns once both accept connections."""
        s = self.settings
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.host, s.http_port))
        self.http_port = sock.getsockname()[1]
        app = create_app(self.dataplane, max_body_bytes=s.max_body_bytes)
        config = uvicorn.Config(
            app,
            log_level=s.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._uvicorn = _Uvicorn(config)
        self._http_task = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))

        self._grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", s.max_body_bytes),
                ("grpc.max_send_message_length", s.max_body_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        self._grpc.add_generic_rpc_handlers((grpc_api.servicer(self.dataplane),))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{s.host}:{s.grpc_port}")
        await self._grpc.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

        until = time.monotonic() + timeout
        while not self._uvicorn.started:
            if self._http_task.done():
                await self._http_task  # re-raises the bind or startup error
                raise RuntimeError("HTTP server stopped during start-up")
            if time.monotonic() > until:
                raise TimeoutError("HTTP server did not start in time")
            await asyncio.sleep(0.01)

    async def stop(self, grace: float = 2.0) -> None:
        """Stops accepting, lets in-flight requests finish within `grace`, closes backends."""
        if self._uvicorn is not None and self._http_task is not None:
            self._uvicorn.should_exit = True
            await self._http_task
        if self._grpc is not None:
            await self._grpc.stop(grace)
        await self.dataplane.aclose()
