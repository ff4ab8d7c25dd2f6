"""Supervisor: one runner child process that reports its port through a port file.

Readiness is the port file followed by the standard gRPC health service answering
SERVING: never a sleep, never a log grep. A runner given a framed socket listens on it
before it writes the port file, so the same readiness covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class Runner(Protocol):
    """What the supervisor needs of any local runner, whatever launches it."""

    name: str
    description: str  # what serves it, in words, for tables, logs and reports
    endpoint: str  # host:port of its gRPC API, once ready
    socket_path: Path | None  # where it also serves the framed v2 protocol, if it does
    ready_after_s: float  # spawn -> ready
    log_path: Path

    @property
    def pid(self) -> int | None: ...

    def spawn(self) -> None: ...

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str: ...

    def alive(self) -> bool: ...

    def stop(self, grace: float = 5.0) -> None: ...


class RunnerFailed(RuntimeError):
    """A runner exited or did not become ready; the message carries its log's tail."""


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RunnerProcess:
    """A child process in its own session (so a stop reaches all its children)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        workdir: Path,
        env: dict[str, str] | None = None,
        description: str = "",
        socket_path: Path | None = None,
    ) -> None:
        self.name = name
        self.socket_path = socket_path
        self.description = description or f"servegate {name} runner"
        self.argv = argv
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.port_file = workdir / f"{name}.port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.started_at = 0.0
        self.ready_after_s = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        """Waits for the port file, then for gRPC health SERVING; returns host:port."""
        until = time.monotonic() + timeout
        while not self.port_file.exists():
            self._check_alive()
            if time.monotonic() > until:
                raise RunnerFailed(
                    f"{self.name}: no port file after {timeout:.0f} s\n{log_tail(self.log_path)}"
                )
            await asyncio.sleep(0.05)
        self.endpoint = f"{host}:{int(self.port_file.read_text())}"
        async with grpc.aio.insecure_channel(self.endpoint) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > until:
                    raise RunnerFailed(f"{self.name}: not SERVING after {timeout:.0f} s")
                await asyncio.sleep(0.05)
        self.ready_after_s = time.monotonic() - self.started_at
        return self.endpoint

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RunnerFailed(
                f"{self.name} exited with code {self.proc.returncode}\n{log_tail(self.log_path)}"
            )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace`; always reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
