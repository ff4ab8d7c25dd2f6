"""Live servers for tests: a real gateway in a background thread over real runners.

The gateway runs in its own thread and event loop (as httpx's tests run uvicorn), so
tests talk to it with ordinary sync clients: curl-like httpx, tritonclient, grpc.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass

import uvloop

from gateway.config import Repository, Settings
from gateway.server import Gateway, build_dataplane


@dataclass
class RunningGateway:
    """A gateway serving in a background thread; ports are the ones it bound."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.gateway.grpc_port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def start_gateway(
    repository: Repository, endpoints: Mapping[str, str], **settings: object
) -> RunningGateway:
    """Builds and starts a gateway over `endpoints` (runner kind -> host:port) on port 0."""
    cfg = Settings(http_port=0, grpc_port=0, repository=repository.root, **settings)  # type: ignore[arg-type]
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()

    async def build() -> Gateway:
        gw = Gateway(build_dataplane(cfg, repository, endpoints), cfg)
        await gw.start()
        return gw

    fut: Future[Gateway] = asyncio.run_coroutine_threadsafe(build(), loop)
    return RunningGateway(fut.result(30), loop, thread)
