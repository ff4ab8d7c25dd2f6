"""Supervisor: the real `tensorflow_model_server`, when PATH has it, for the `tfserving` kind.

A model_config_file names every model with a local tfserving variant; readiness (and
health, afterwards) is its ModelService reporting a version AVAILABLE for each. Where
there is no binary (this machine: none exists for it on Debian or PyPI), launchers.py
starts our tf runner instead, which serves the same gRPC API over the same SavedModels.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import grpc

from gateway.config import Repository
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import TFServingStub
from gateway.supervisor.process import ChildProcess, Runner, RunnerFailed

RUNNER_KIND = "tfserving"


def served_models(repository: Repository) -> dict[str, tuple[Path, list[int]]]:
    """model -> (base path, built versions) for every model with a local tfserving variant."""
    out: dict[str, tuple[Path, list[int]]] = {}
    for a in repository.built_artifacts(RUNNER_KIND):
        _, versions = out.setdefault(a.model.name, (repository.folder(a.model.name).resolve(), []))
        versions.append(int(a.version))
    return out


def model_config_text(models: dict[str, tuple[Path, list[int]]]) -> str:
    """TF Serving's ModelServerConfig (text proto): exactly the versions model.yaml lists."""
    lines = ["model_config_list {"]
    for name, (base, versions) in sorted(models.items()):
        specific = " ".join(f"versions: {v}" for v in versions)
        lines += [
            "  config {",
            f'    name: "{name}"',
            f'    base_path: "{base}"',
            '    model_platform: "tensorflow"',
            f"    model_version_policy {{ specific {{ {specific} }} }}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _free_port(host: str) -> int:
    # The binary cannot bind port 0 and report it, so a port is picked here; the small
    # race with other processes is the price of not having a port file.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ModelServerProcess(ChildProcess):
    """`tensorflow_model_server` on a chosen port (kept across restarts); ready, and
    healthy, while every model has a version AVAILABLE."""

    def __init__(
        self, binary: str, config: Path, workdir: Path, host: str, models: list[str]
    ) -> None:
        super().__init__(RUNNER_KIND, workdir, description="tensorflow_model_server (TF Serving)")
        self.binary = binary
        self.config = config
        self.host = host
        self.port = 0
        self.models = models

    def spawn(self, *, fresh_ports: bool = False) -> None:
        if fresh_ports or not self.port:
            self.port = _free_port(self.host)
        argv = [
            sys.executable, "-m", "runners.guard", "--",  # it dies with the gateway
            self.binary, f"--port={self.port}", "--rest_api_port=0",
            f"--model_config_file={self.config}",
        ]  # fmt: skip
        self._popen(argv)

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        until = time.monotonic() + timeout
        self.endpoint = f"{host}:{self.port}"
        waiting = list(self.models)
        while waiting:
            self._check_alive()
            if time.monotonic() > until:
                raise RunnerFailed(
                    f"{self.name}: {waiting} not AVAILABLE after {timeout:.0f} s\n"
                    f"{self.log_tail()}"
                )
            waiting = [m for m in waiting if not await self._available(m, 1.0)]
            if waiting:
                await asyncio.sleep(0.1)
        self.ready_after_s = time.monotonic() - self.started_at
        return self.endpoint

    async def probe(self, timeout: float) -> bool:
        for model in self.models:
            if not await self._available(model, timeout):
                return False
        return True

    async def _available(self, model: str, timeout: float) -> bool:
        request = pb.GetModelStatusRequest(model_spec=pb.ModelSpec(name=model))
        async with grpc.aio.insecure_channel(self.endpoint) as channel:
            try:
                reply = await TFServingStub(channel).GetModelStatus(request, timeout=timeout)
            except grpc.aio.AioRpcError:
                return False
        available = pb.ModelVersionStatus.AVAILABLE
        return any(v.state == available for v in reply.model_version_status)


def model_server(repository: Repository, workdir: Path, host: str, binary: str) -> Runner:
    """A `tensorflow_model_server` serving every local tfserving variant of `repository`.

    It listens on all interfaces (the binary has no gRPC host flag) with REST off.
    """
    models = served_models(repository)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "tfserving.models.config"
    config.write_text(model_config_text(models))
    return ModelServerProcess(binary, config, workdir, host, sorted(models))
