"""Supervisor: decides which runners a repository needs, starts them, stops them all.

Each runner kind is one child process serving every model that has a variant for it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

from gateway.config import Repository
from gateway.supervisor.process import RunnerFailed, RunnerProcess

__all__ = ["RUNNER_MODULES", "RunnerFailed", "Supervisor"]

# runner kind -> the module that runs it with the shared runner command line
RUNNER_MODULES = {
    "onnx": "runners.onnx",
}

# Seconds a runner may take from spawn to ready (TensorFlow imports alone take 3-6 s here).
START_TIMEOUT = {"onnx": 30.0}


def needed_runners(repository: Repository) -> list[str]:
    """Runner kinds with a variant that has no external endpoint, in a stable order."""
    kinds = {
        v.runner for m in repository.values() for v in m.variants.values() if v.endpoint is None
    }
    return sorted(k for k in kinds if k in RUNNER_MODULES)


class Supervisor:
    """Starts and stops the local runner processes for one repository."""

    def __init__(self, repository: Repository, workdir: Path, host: str = "127.0.0.1") -> None:
        self.repository = repository
        self.workdir = workdir
        self.host = host
        self.runners: dict[str, RunnerProcess] = {}

    def _process(self, kind: str) -> RunnerProcess:
        argv = [
            sys.executable,
            "-m",
            RUNNER_MODULES[kind],
            "--repository",
            str(self.repository.root),
            "--host",
            self.host,
            "--port",
            "0",
            "--port-file",
            str(self.workdir / f"{kind}.port"),
        ]
        return RunnerProcess(kind, argv, self.workdir)

    async def start(self, kinds: Iterable[str]) -> dict[str, str]:
        """Starts every kind at once and waits for all; returns kind -> host:port."""
        kinds = list(kinds)
        unknown = [k for k in kinds if k not in RUNNER_MODULES]
        if unknown:
            raise RunnerFailed(f"no local runner for {unknown}; known: {sorted(RUNNER_MODULES)}")
        for kind in kinds:
            proc = self._process(kind)
            self.runners[kind] = proc
            proc.spawn()
        try:
            endpoints = await asyncio.gather(
                *(self.runners[k].wait_ready(START_TIMEOUT.get(k, 60.0), self.host) for k in kinds)
            )
        except BaseException:
            self.stop()
            raise
        return dict(zip(kinds, endpoints, strict=True))

    def stop(self) -> None:
        for proc in self.runners.values():
            proc.stop()
