"""Live servers for tests: a real gateway in a background thread over real runners.

The gateway runs in its own thread and event loop (as httpx's tests run uvicorn), so
tests talk to it with ordinary sync clients: curl-like httpx, tritonclient, grpc.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import uvloop

from gateway import client
from gateway.config import Repository, Settings
from gateway.server import Gateway, build_dataplane
from gateway.supervisor import Supervisor
from gateway.tensors import InferResponse


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


def samples(repository: Repository, model: str) -> dict[str, np.ndarray]:
    """The arrays of `model`'s samples.npz (inputs, logits, labels), loaded into memory."""
    with np.load(repository.version_folder(model) / "samples.npz") as f:
        return {k: f[k] for k in f.files}


def infer(
    gw: RunningGateway, protocol: str, model: str, inputs: Mapping[str, np.ndarray]
) -> InferResponse:
    """One request to `gw` over `protocol` (one of gateway.client.PROTOCOLS)."""
    if protocol not in client.PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    if protocol == "grpc":
        with grpc.insecure_channel(gw.grpc_address) as channel:
            return client.infer_grpc(channel, model, inputs)
    with client.http_client(gw.http_url, timeout=60) as http:
        return client.infer_http(http, model, inputs, binary=protocol == "binary")


def logits(response: InferResponse) -> np.ndarray:
    """The response's only output, checked to be the FP32 `logits`."""
    (out,) = response.outputs
    assert out.name == "logits" and out.datatype == "FP32"
    return out.data


class LiveRunners:
    """Runner processes started once per session, one Supervisor per kind.

    `runners(kind)` is the runner's own gRPC address (for direct calls); `runners.hop(kind)`
    is what a gateway forwards to: the framed Unix socket where the runner has one.
    """

    def __init__(self, repository: Repository, workdirs: Callable[[str], Path]) -> None:
        self.repository = repository
        self._workdirs = workdirs
        self.supervisors: dict[str, Supervisor] = {}

    def _start(self, kind: str) -> Supervisor:
        if kind not in self.supervisors:
            sup = Supervisor(self.repository, self._workdirs(kind))
            self.supervisors[kind] = sup
            asyncio.run(sup.start([kind]))
        return self.supervisors[kind]

    def __call__(self, kind: str) -> str:
        return self._start(kind).runners[kind].endpoint

    def hop(self, kind: str) -> str:
        return self._start(kind).gateway_endpoints()[kind]

    def stop(self) -> None:
        for sup in self.supervisors.values():
            sup.stop()
            for runner in sup.runners.values():
                assert not runner.alive(), f"runner {runner.name} was not reaped"
