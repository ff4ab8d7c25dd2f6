"""A gateway with the TF Serving and TorchServe front ends composed in, for the conformance
tests of those front ends: the v2 app plus the compatibility router (HTTP), the v2
servicer plus the compatibility handlers (gRPC), one DataPlane over real runners, in a
background thread and loop as tests/live.py runs a gateway. Ports are 127.0.0.1:0;
readiness is uvicorn's `started` flag and a probe, never a sleep.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import uvicorn
import uvloop

from gateway.api import compat_grpc
from gateway.api import grpc as grpc_api
from gateway.api.http import create_app
from gateway.config import Repository, Settings
from gateway.dataplane import DataPlane
from gateway.server import build_dataplane
from tests.live import wait_for


@dataclass
class CompatGateway:
    dataplane: DataPlane
    http_url: str
    grpc_address: str
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    _uvicorn: uvicorn.Server
    _http: asyncio.Future[None]
    _grpc: grpc.aio.Server

    def stop(self) -> None:
        async def down() -> None:
            self._uvicorn.should_exit = True
            await self._http
            await self._grpc.stop(1.0)
            await self.dataplane.aclose()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def start(
    repository: Repository,
    endpoints: Mapping[str, str],
    *,
    key_files: Mapping[str, Path] | None = None,
) -> CompatGateway:
    """A gateway over `endpoints` (runner kind -> endpoint) with both compat front ends."""
    settings = Settings(http_port=0, grpc_port=0, repository=repository.root)
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="compat-gateway", daemon=True)
    thread.start()

    async def build() -> CompatGateway:
        plane = build_dataplane(settings, repository, endpoints, key_files=key_files)
        plane.start()
        limit = settings.max_body_bytes
        app = create_app(plane, max_body_bytes=limit)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        server.capture_signals = _no_signals  # type: ignore[method-assign]
        http = asyncio.ensure_future(server.serve(sockets=[sock]))
        rpc = grpc.aio.server()
        rpc.add_generic_rpc_handlers((grpc_api.servicer(plane), *compat_grpc.handlers(plane)))
        port = rpc.add_insecure_port("127.0.0.1:0")
        await rpc.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return CompatGateway(plane, url, f"127.0.0.1:{port}", loop, thread, server, http, rpc)

    gw = asyncio.run_coroutine_threadsafe(build(), loop).result(30)
    wait_for(lambda: gw._uvicorn.started, 10, "uvicorn to start")
    wait_for(lambda: httpx.get(f"{gw.http_url}/v2/health/ready").status_code == 200, 60, "ready")
    return gw


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_signals() -> _NoSignals:
    """uvicorn's capture_signals, made a no-op: the test process owns its signals."""
    return _NoSignals()
