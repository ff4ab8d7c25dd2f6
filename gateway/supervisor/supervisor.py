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
from gateway.supervisor.process import Runner, RunnerFailed, RunnerProcess
from gateway.supervisor.tfserving import launcher as tfserving_launcher
from gateway.supervisor.torchserve import launch as launch_torchserve

__all__ = ["LAUNCHERS", "RunnerFailed", "Supervisor", "module_runner", "needed_runners"]

Launcher = Callable[[Repository, Path, str], Runner]


def module_runner(module: str, description: str = "") -> Launcher:
    """A launcher for our runners: `python -m MODULE` with the shared runner command line."""

    def launch(repository: Repository, workdir: Path, host: str) -> Runner:
        kind = module.rsplit(".", 1)[-1]
        argv = [
            sys.executable, "-m", module,
            "--repository", str(repository.root),
            "--host", host, "--port", "0",
            "--port-file", str(workdir / f"{kind}.port"),
        ]  # fmt: skip
        return RunnerProcess(kind, argv, workdir, description=description)

    return launch


# runner kind -> how to start it locally
LAUNCHERS: dict[str, Launcher] = {
    "onnx": module_runner("runners.onnx"),
    "jax": module_runner("runners.jax"),
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
        """Starts every kind at once and waits for all; returns kind -> host:port."""
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

    def stop(self) -> None:
        for runner in self.runners.values():
            runner.stop()
