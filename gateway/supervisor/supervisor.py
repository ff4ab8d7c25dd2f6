"""Supervisor: decides which runners a repository needs, starts them, stops them all.

Each runner kind is one child process (or, for TorchServe, one launcher with its
frontend and workers) serving every model that has a variant for it. How a kind is
launched is one entry in LAUNCHERS.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from gateway.config import Repository
from gateway.protocol.framed import endpoint as framed_endpoint
from gateway.supervisor.process import Runner, RunnerFailed, RunnerProcess
from gateway.supervisor.tfserving import launcher as tfserving_launcher
from gateway.supervisor.torchserve import launch as launch_torchserve

__all__ = ["LAUNCHERS", "RunnerFailed", "Supervisor", "module_runner", "needed_runners"]

Launcher = Callable[[Repository, Path, str], Runner]


# AF_UNIX paths are limited to 108 bytes (sun_path) on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107


def module_runner(module: str, description: str = "", *, framed: bool = False) -> Launcher:
    """A launcher for our runners: `python -m MODULE` with the shared runner command line.

    `framed`: the runner also serves the framed v2 protocol on `<workdir>/<kind>.sock`
    (the gateway's cheap hop on this machine), unless that path is too long for AF_UNIX.
    """

    def launch(repository: Repository, workdir: Path, host: str) -> Runner:
        kind = module.rsplit(".", 1)[-1]
        argv = [
            sys.executable, "-m", module,
            "--repository", str(repository.root),
            "--host", host, "--port", "0",
            "--port-file", str(workdir / f"{kind}.port"),
        ]  # fmt: skip
        sock: Path | None = workdir.absolute() / f"{kind}.sock"
        if not framed or len(str(sock)) > MAX_SOCKET_PATH:
            sock = None
        else:
            argv += ["--socket", str(sock)]
        return RunnerProcess(kind, argv, workdir, description=description, socket_path=sock)

    return launch


# runner kind -> how to start it locally
LAUNCHERS: dict[str, Launcher] = {
    "onnx": module_runner("runners.onnx", framed=True),
    "jax": module_runner("runners.jax", framed=True),
    "torchserve": launch_torchserve,
    # tensorflow_model_server when PATH has it, else our tf runner (same gRPC API)
    "tfserving": tfserving_launcher(
        fallback=module_runner(
            "runners.tensorflow",
            "servegate tf runner (TF Serving API)",
        )
    ),
}

# Seconds a runner may take from spawn to ready (TensorFlow imports alone take 3-6 s here).
START_TIMEOUT: dict[str, float] = {
    "onnx": 30.0,
    "jax": 60.0,
    "torchserve": 120.0,
    "tfserving": 60.0,
}


def needed_runners(repository: Repository) -> list[str]:
    """Runner kinds with a variant that has no external endpoint, in a stable order."""
    kinds = {
        v.runner for m in repository.values() for v in m.variants.values() if v.endpoint is None
    }
    return sorted(k for k in kinds if k in LAUNCHERS)


class Supervisor:
    """Starts and stops the local runner processes for one repository."""

    def __init__(self, repository: Repository, workdir: Path, host: str = "127.0.0.1") -> None:
        self.repository = repository
        self.workdir = workdir
        self.host = host
        self.runners: dict[str, Runner] = {}

    async def start(self, kinds: Iterable[str]) -> dict[str, str]:
        """Starts every kind at once and waits for all; returns kind -> gRPC host:port."""
        kinds = list(kinds)
        unknown = [k for k in kinds if k not in LAUNCHERS]
        if unknown:
            raise RunnerFailed(f"no local runner for {unknown}; known: {sorted(LAUNCHERS)}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            runner = LAUNCHERS[kind](self.repository, self.workdir, self.host)
            self.runners[kind] = runner
            runner.spawn()
        try:
            endpoints = await asyncio.gather(
                *(self.runners[k].wait_ready(START_TIMEOUT.get(k, 60.0), self.host) for k in kinds)
            )
        except BaseException:
            self.stop()
            raise
        return dict(zip(kinds, endpoints, strict=True))

    def gateway_endpoints(self, *, framed: bool = True) -> dict[str, str]:
        """kind -> the endpoint the gateway should forward to: the framed socket of a runner
        that serves one (when `framed`), else its gRPC host:port."""
        return {
            kind: framed_endpoint(str(r.socket_path))
            if framed and r.socket_path is not None
            else r.endpoint
            for kind, r in self.runners.items()
        }

    def stop(self) -> None:
        for runner in self.runners.values():
            runner.stop()
