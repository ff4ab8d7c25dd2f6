"""Supervisor: one runner child process that reports its port through a port file.

Readiness is the port file followed by the standard gRPC health service answering
SERVING: never a sleep, never a log grep. A runner given a framed socket listens on it
before it writes the port file, so the same readiness covers it. The child dies with
the gateway, even when the gateway is SIGKILLed (it arms a parent-death signal itself:
runners/lifetime.py); a restarted child asks for the port its predecessor had, so the
gateway reaches it at the same address without being told. Programs that are not ours
run under runners/guard.py, which does the same for them and all their children.
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

# The runner arms its own parent-death signal from this (runners/lifetime.py); the
# gateway's spawn stays a plain fork+exec, safe beside gRPC's threads.
PARENT_ENV = "SERVEGATE_PARENT_PID"


class Runner(Protocol):
    """What the supervisor needs of any local runner, whatever launches it."""

    name: str
    description: str  # what serves it, in words, for tables, logs and reports
    endpoint: str  # host:port of its gRPC API, once ready
    socket_path: Path | None  # where it also serves the framed v2 protocol, if it does
    ready_after_s: float  # spawn -> ready
    log_path: Path
    key_file: Path | None  # where its token-authorization keys are, if it has any

    @property
    def pid(self) -> int | None: ...

    def spawn(self, *, fresh_ports: bool = False) -> None: ...

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str: ...

    async def wait_exit(self, timeout: float) -> bool: ...

    async def probe(self, timeout: float) -> bool: ...

    def alive(self) -> bool: ...

    def exit_reason(self) -> str: ...

    def log_tail(self, lines: int = 20) -> str: ...

    def kill(self) -> None: ...

    def stop(self, grace: float = 5.0) -> None: ...


class RunnerFailed(RuntimeError):
    """A runner exited or did not become ready; the message carries its log's tail."""


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def describe_exit(code: int | None) -> str:
    """`exited with code 1`, `killed by SIGKILL`, or `running`."""
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


async def wait_for_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once `proc` has exited, False after `timeout`: woken by a pidfd at once on
    Linux (no polling), by polling every 50 ms elsewhere."""
    if proc.poll() is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        until = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() >= until:
                return False
            await asyncio.sleep(0.05)
        return True
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(fd, exited.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.poll() is not None


async def grpc_health(endpoint: str, timeout: float) -> bool:
    """True when grpc.health.v1 at `endpoint` says SERVING within `timeout`."""
    async with grpc.aio.insecure_channel(endpoint) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class ChildProcess:
    """A child process in its own session (so a stop reaches all its children), logging to
    `<workdir>/<name>.log`, dying with the gateway."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        env: dict[str, str] | None = None,
        description: str = "",
        socket_path: Path | None = None,
    ) -> None:
        self.name = name
        self.socket_path = socket_path
        self.description = description or f"servegate {name} runner"
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.key_file: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.started_at = 0.0
        self.ready_after_s = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> str:
        return describe_exit(self.proc.poll() if self.proc else None)

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def _popen(self, argv: list[str], *, cwd: Path | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {}), PARENT_ENV: str(os.getpid())}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    async def wait_exit(self, timeout: float) -> bool:
        return True if self.proc is None else await wait_for_exit(self.proc, timeout)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RunnerFailed(f"{self.name} {self.exit_reason()}\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL to the whole process group at once (a hung runner may be SIGSTOPped)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the whole process group (the runner drains), SIGKILL after `grace`;
        always reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
            os.killpg(self.proc.pid, signal.SIGCONT)  # a stopped runner cannot drain
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()


class RunnerProcess(ChildProcess):
    """One of our runners (`python -m runners.<kind>`): it binds `--port` (0 the first
    time, its predecessor's port after a restart) and writes what it bound to its port
    file; health is grpc.health.v1."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        workdir: Path,
        env: dict[str, str] | None = None,
        description: str = "",
        socket_path: Path | None = None,
    ) -> None:
        super().__init__(name, workdir, env, description, socket_path)
        self.argv = argv
        self.port_file = workdir / f"{name}.port"
        self.port = 0

    def spawn(self, *, fresh_ports: bool = False) -> None:
        if fresh_ports:
            self.port = 0
        self.port_file.unlink(missing_ok=True)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        argv = [*self.argv, "--port", str(self.port), "--port-file", str(self.port_file)]
        self._popen(argv)

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        """Waits for the port file, then for gRPC health SERVING; returns host:port."""
        until = time.monotonic() + timeout
        while not self.port_file.exists():
            self._check_alive()
            if time.monotonic() > until:
                raise RunnerFailed(
                    f"{self.name}: no port file after {timeout:.0f} s\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.endpoint = f"{host}:{self.port}"
        while not await grpc_health(self.endpoint, timeout=1.0):
            self._check_alive()
            if time.monotonic() > until:
                raise RunnerFailed(f"{self.name}: not SERVING after {timeout:.0f} s")
            await asyncio.sleep(0.05)
        self.ready_after_s = time.monotonic() - self.started_at
        return self.endpoint

    async def probe(self, timeout: float) -> bool:
        return bool(self.endpoint) and await grpc_health(self.endpoint, timeout)
