"""Live servers for tests: a real gateway in a background thread over real runners.

The gateway runs in its own thread and event loop (as httpx's tests run uvicorn), so
tests talk to it with ordinary sync clients: curl-like httpx, tritonclient, grpc.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc
import httpx
import numpy as np
import psutil
import uvloop

from gateway import client
from gateway.config import Repository, Settings
from gateway.lifecycle import Lifecycle
from gateway.protocol import v2_grpc
from gateway.protocol.v2_service import V2Stub
from gateway.server import Gateway, build_dataplane
from gateway.supervisor import Supervisor
from gateway.supervisor.torchserve import TorchServeRunner
from gateway.tensors import InferRequest, InferResponse, Tensor


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
    repository: Repository,
    endpoints: Mapping[str, str],
    *,
    key_files: Mapping[str, Path] | None = None,
    **settings: object,
) -> RunningGateway:
    """Builds and starts a gateway over `endpoints` (runner kind -> host:port) on port 0;
    `key_files`: a local TorchServe's key file, by runner kind."""
    cfg = Settings(http_port=0, grpc_port=0, repository=repository.root, **settings)  # type: ignore[arg-type]
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()

    async def build() -> Gateway:
        gw = Gateway(build_dataplane(cfg, repository, endpoints, key_files=key_files), cfg)
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

    def key_files(self) -> dict[str, Path]:
        """The key file of every TorchServe started so far (its token authorization is on)."""
        return {
            kind: runner.key_file
            for sup in self.supervisors.values()
            for kind, runner in sup.runners.items()
            if isinstance(runner, TorchServeRunner)
        }

    def stop(self) -> None:
        for sup in self.supervisors.values():
            sup.stop()
            for runner in sup.runners.values():
                assert not runner.alive(), f"runner {runner.name} was not reaped"


@dataclass
class ServegateUp:
    """`servegate up` as a user starts it: its own process, ports and pids from --ready-file."""

    proc: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.info['http_port']}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.info['grpc_port']}"

    def runner_pid(self, kind: str) -> int:
        return int(self.info["runners"][kind]["pid"])

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def metrics(self) -> str:
        return httpx.get(f"{self.http_url}/metrics", timeout=10).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        """Sends `sig` and waits for the exit; SIGKILL if it does not come in `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def servegate_up(
    folder: Path, runners: list[str], env: Mapping[str, str] | None = None, timeout: float = 240
) -> ServegateUp:
    """Starts `servegate up --runner ...` on port 0 (no build: the session built the models)
    and waits for its ready file. Settings come as SERVEGATE_* variables in `env`."""
    ready = folder / "ready.json"
    log_path = folder / "servegate.log"
    argv = [sys.executable, "-m", "gateway", "up", "--http-port", "0", "--grpc-port", "0",
            "--no-build", "--ready-file", str(ready)]  # fmt: skip
    for kind in runners:
        argv += ["--runner", kind]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    until = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > until:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise RuntimeError(f"servegate up did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.05)
    return ServegateUp(proc, json.loads(ready.read_text()), log_path)


GATEWAY_DEADLINE_S = 3.0  # the `timeout` every GrpcLoad request carries
CLIENT_TIMEOUT_S = 20.0  # far past it: a client that waits this long got no answer


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


class LoadThreads:
    """Threads that send requests until `stop` is set: `with` starts them, and on the way
    out stops them and checks each came back within `join_s`."""

    threads: list[threading.Thread]
    stop: threading.Event
    join_s: float = 60.0

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.join_s)
            assert not t.is_alive(), "a request never came back"


class GrpcLoad(LoadThreads):
    """Threads sending digits requests to one variant, recording every outcome."""

    join_s = CLIENT_TIMEOUT_S + 5

    def __init__(self, address: str, variant: str, x: np.ndarray, threads: int = 3) -> None:
        self.address, self.model, self.x = address, f"digits@{variant}", x
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, str, float]] = []  # sent, outcome, took
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        msg = v2_grpc.request_to_pb(
            InferRequest(
                self.model,
                (Tensor("pixels", "FP32", self.x),),
                parameters={"timeout": int(GATEWAY_DEADLINE_S * 1e6)},
            )
        )
        with grpc.insecure_channel(self.address) as channel:
            stub = V2Stub(channel)  # type: ignore[arg-type]
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    stub.ModelInfer(msg, timeout=CLIENT_TIMEOUT_S)
                    outcome = "OK"
                except grpc.RpcError as exc:
                    took = time.monotonic() - sent
                    code = exc.code().name  # type: ignore[attr-defined]
                    outcome = "NO ANSWER" if took >= CLIENT_TIMEOUT_S - 1 else code
                with self.lock:
                    self.results.append((sent, outcome, time.monotonic() - sent))
                if outcome != "OK":
                    self.stop.wait(0.05)  # a client backing off; spares the 2 cores

    def oks_after(self, t: float) -> list[float]:
        """When each success that was sent after `t` was sent."""
        with self.lock:
            return [sent for sent, outcome, _ in self.results if outcome == "OK" and sent > t]

    def check_answers(self) -> set[str]:
        """Every request was answered, within its deadline, with success or a code that
        says 'not now'; returns the outcomes seen."""
        outcomes = {outcome for _, outcome, _ in self.results}
        assert "NO ANSWER" not in outcomes
        assert outcomes <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
        slowest = max(took for _, _, took in self.results)
        assert slowest < GATEWAY_DEADLINE_S + 1.5, f"a request took {slowest:.2f} s"
        return outcomes


@dataclass
class RunningStack(RunningGateway):
    """Supervisor + gateway + repository lifecycle in this process, wired as `servegate up`
    wires them, serving in a background thread's event loop."""

    supervisor: Supervisor
    lifecycle: Lifecycle

    def call(self, coro: Any, timeout: float = 120) -> Any:
        """Runs `coro` on the stack's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def close() -> None:
            await self.gateway.stop()
            await self.supervisor.aclose()

        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_stack(
    repository: Repository,
    kinds: list[str],
    workdir: Path,
    *,
    settings: Mapping[str, object] | None = None,
    **supervisor: Any,
) -> RunningStack:
    """Starts runners `kinds` under a Supervisor, and a gateway over them on port 0."""
    cfg = Settings(
        http_port=0,
        grpc_port=0,
        repository=repository.root,
        **(settings or {}),  # type: ignore[arg-type]
    )
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stack", daemon=True)
    thread.start()

    async def build() -> tuple[Gateway, Supervisor, Lifecycle]:
        sup = Supervisor(repository, workdir, **supervisor)
        await sup.start(kinds)
        key_files = {k: r.key_file for k, r in sup.runners.items() if r.key_file is not None}
        dataplane = build_dataplane(cfg, repository, sup.gateway_endpoints(), key_files=key_files)
        lifecycle = Lifecycle.local(dataplane, repository.root, runners=sup, drain_s=5.0)
        gw = Gateway(dataplane, cfg, lifecycle)
        await gw.start()
        sup.serve(gw.dataplane)
        return gw, sup, lifecycle

    gw, sup, lifecycle = asyncio.run_coroutine_threadsafe(build(), loop).result(180)
    return RunningStack(gw, loop, thread, sup, lifecycle)
