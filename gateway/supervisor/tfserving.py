"""Supervisor: launches the `tfserving` runner kind locally.

A `tensorflow_model_server` binary on PATH is used as it is: a model_config_file names
every model with a local tfserving variant, and readiness is its ModelService reporting
a version AVAILABLE for each. Where there is no binary (this machine: none exists for it
on Debian or PyPI), the fallback launcher starts our tf runner, which serves the same
gRPC API over the same SavedModels.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from gateway.config import Repository
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import TFServingStub
from gateway.supervisor.process import Runner, RunnerFailed, RunnerProcess, log_tail

BINARY = "tensorflow_model_server"
RUNNER_KIND = "tfserving"

Launcher = Callable[[Repository, Path, str], Runner]


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


class ModelServerProcess(RunnerProcess):
    """`tensorflow_model_server` on a chosen port; ready once every model is AVAILABLE."""

    def __init__(self, argv: list[str], workdir: Path, port: int, models: list[str]) -> None:
        super().__init__(
            RUNNER_KIND, argv, workdir, description="tensorflow_model_server (TF Serving)"
        )
        self.port = port
        self.models = models

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        until = time.monotonic() + timeout
        self.endpoint = f"{host}:{self.port}"
        async with grpc.aio.insecure_channel(self.endpoint) as channel:
            stub = TFServingStub(channel)
            waiting = list(self.models)
            while waiting:
                self._check_alive()
                if time.monotonic() > until:
                    raise RunnerFailed(
                        f"{self.name}: {waiting} not AVAILABLE after {timeout:.0f} s\n"
                        f"{log_tail(self.log_path)}"
                    )
                waiting = [m for m in waiting if not await _available(stub, m)]
                if waiting:
                    await asyncio.sleep(0.1)
        self.ready_after_s = time.monotonic() - self.started_at
        return self.endpoint


async def _available(stub: TFServingStub, model: str) -> bool:
    request = pb.GetModelStatusRequest(model_spec=pb.ModelSpec(name=model))
    try:
        reply = await stub.GetModelStatus(request, timeout=1.0)
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
    port = _free_port(host)
    argv = [binary, f"--port={port}", "--rest_api_port=0", f"--model_config_file={config}"]
    return ModelServerProcess(argv, workdir, port, sorted(models))


def launcher(fallback: Launcher) -> Launcher:
    """The `tfserving` launcher: the real binary when PATH has it, else `fallback`."""

    def launch(repository: Repository, workdir: Path, host: str) -> Runner:
        binary = shutil.which(BINARY)
        if binary is None:
            return fallback(repository, workdir, host)
        return model_server(repository, workdir, host, binary)

    return launch
