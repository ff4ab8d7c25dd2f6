"""Supervisor: the real TorchServe 0.12 (Java frontend + Python workers) as one local runner.

Everything TorchServe would share with another instance on the machine is made private to
this one, under `<workdir>/torchserve/`: the generated config.properties, a model store of
hard links to each model's `<version>/model.mar`, TMPDIR/TEMP (PID file, worker sockets,
extracted archives), LOG_LOCATION and METRICS_LOCATION. All five listeners bind `host`
(loopback by default); token auth and config snapshots are off; the JVM heap is bounded.

Ports: TorchServe cannot bind port 0 and report what it got, so five consecutive free
ports are chosen here, at random below the kernel's ephemeral range (where port-0 servers
and outgoing connections cannot take them first), held bound until just before the start.
A port lost anyway shows as a start failure with TorchServe's bind error. The gRPC
management port is always the gRPC inference port + 1, TorchServe's own default layout
(7070/7071), which is what the gateway's backend derives it from.

Ready: every registered model has a worker whose status is READY in the management API
(/ping says Healthy while no worker lives). `stop()` ends the whole process group and
then every process that was seen in it (launcher, Java frontend, Python workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from gateway.config import Repository
from gateway.supervisor.process import RunnerFailed, log_tail

HEAP = "512m"
MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # TorchServe's default (6.5 MB) is below one ResNet batch


def _rolling(name: str, folder: str, layout: str) -> str:
    return (
        f'<RollingFile name="{name}" fileName="${{env:{folder}}}/{name}.log"'
        f' filePattern="${{env:{folder}}}/{name}.%i.log.gz">'
        f'<PatternLayout pattern="{layout}"/>'
        '<Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>'
        '<DefaultRolloverStrategy max="5"/></RollingFile>'
    )


_FULL = "%d{ISO8601} [%-5p] %t %c - %m%n"
_SHORT = "%d{ISO8601} - %m%n"
# TorchServe 0.12's own log4j2.xml (same files, loggers and levels), except that the console,
# which is our torchserve.log, gets WARN and up only: TorchServe writes several lines per
# request at INFO/DEBUG, which stay in its rolling files under LOG_LOCATION/METRICS_LOCATION.
LOG4J2 = f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <ThresholdFilter level="WARN"/><PatternLayout pattern="{_FULL}"/>
    </Console>
    {_rolling("access_log", "LOG_LOCATION", _SHORT)}
    {_rolling("model_log", "LOG_LOCATION", _FULL)}
    {_rolling("ts_log", "LOG_LOCATION", _FULL)}
    {_rolling("model_metrics", "METRICS_LOCATION", _SHORT)}
    {_rolling("ts_metrics", "METRICS_LOCATION", _SHORT)}
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="info"><AppenderRef ref="access_log"/></Logger>
    <Logger name="io.netty" level="error"/>
    <Logger name="MODEL_LOG" level="all"><AppenderRef ref="model_log"/></Logger>
    <Logger name="MODEL_METRICS" level="all"><AppenderRef ref="model_metrics"/></Logger>
    <Logger name="org.apache" level="off"/>
    <Logger name="org.pytorch.serve" level="debug"><AppenderRef ref="ts_log"/></Logger>
    <Logger name="TS_METRICS" level="all"><AppenderRef ref="ts_metrics"/></Logger>
    <Root level="info"><AppenderRef ref="STDOUT"/><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


def torchserve_models(repository: Repository) -> dict[str, Path]:
    """Model name -> .mar of its local torchserve variant (latest version only)."""
    models: dict[str, Path] = {}
    for model in repository.values():
        local = [v for v in model.variants.values() if v.runner == "torchserve" and not v.endpoint]
        if len(local) > 1:
            raise RunnerFailed(f"model {model.name} has {len(local)} torchserve variants; one fits")
        if local:
            models[model.name] = repository.version_folder(model.name) / local[0].artifact
    return models


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _ephemeral_floor() -> int:
    """Where the kernel's ephemeral ports (port 0, outgoing connections) start."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(host: str) -> tuple[list[socket.socket], int]:
    """Five consecutive free ports, from a random base below the ephemeral range.

    In order: REST inference, management, metrics, gRPC inference, gRPC management.
    Below the ephemeral range, no port-0 server or outgoing connection can take one
    between the check and TorchServe's bind. The sockets stay bound (reserving the
    ports) until the caller closes them, right before the start.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.SystemRandom()
    top = max(_ephemeral_floor(), 15_000) - 5
    for _ in range(100):
        base = rng.randrange(10_000, top)
        held: list[socket.socket] = []
        for port in range(base, base + 5):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                break
            held.append(sock)
        if len(held) == 5:
            return held, base
        for sock in held:
            sock.close()
    raise RunnerFailed(f"torchserve: found no five consecutive free ports on {host}")


class TorchServeRunner:
    """One TorchServe instance serving every model that has a local torchserve variant."""

    name = "torchserve"

    def __init__(self, repository: Repository, workdir: Path, host: str) -> None:
        self.models = torchserve_models(repository)
        self.description = f"TorchServe {_version()}"
        self.host = host
        self.home = workdir / "torchserve"
        self.log_path = workdir / "torchserve.log"  # the launcher's output and WARN+ lines
        self.ts_log_path = self.home / "logs" / "ts_log.log"  # everything, workers' too
        self.endpoint = ""
        self.socket_path: Path | None = None  # gRPC only
        self.management_url = ""
        self.inference_url = ""
        self.grpc_management_endpoint = ""
        self.ready_after_s = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}
        self._started_at = 0.0
        self._failed: RunnerFailed | None = None  # from spawn, raised by wait_ready

    @property
    def pid(self) -> int | None:
        """The launcher's PID (`torchserve --foreground`), leader of the process group."""
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        """Starts TorchServe; a problem found here is raised by wait_ready (as other
        runners report theirs), so the Supervisor stops whatever it started beside."""
        try:
            self._spawn()
        except RunnerFailed as exc:
            self._failed = exc

    def _spawn(self) -> None:
        if not self.models:
            raise RunnerFailed("torchserve: no model has a local torchserve variant")
        dirs = {d: self.home / d for d in ("store", "tmp", "logs", "metrics")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for name, mar in self.models.items():
            if not mar.is_file():
                raise RunnerFailed(f"torchserve: {mar} is missing; run `servegate models build`")
            link = dirs["store"] / f"{name}.mar"
            link.unlink(missing_ok=True)
            try:
                os.link(mar, link)
            except OSError:  # another file system: copy
                link.write_bytes(mar.read_bytes())
        held, base = _free_ports(self.host)
        rest, mgmt, metrics, grpc_inf, grpc_mgmt = range(base, base + 5)
        self.inference_url = _url(self.host, rest)
        self.management_url = _url(self.host, mgmt)
        self.endpoint = f"{self.host}:{grpc_inf}"
        self.grpc_management_endpoint = f"{self.host}:{grpc_mgmt}"
        log_config = self.home / "log4j2.xml"
        log_config.write_text(LOG4J2)
        config = self.home / "config.properties"
        config.write_text(
            "\n".join(
                [
                    f"inference_address={self.inference_url}",
                    f"management_address={self.management_url}",
                    f"metrics_address={_url(self.host, metrics)}",
                    f"grpc_inference_address={self.host}",
                    f"grpc_inference_port={grpc_inf}",
                    f"grpc_management_address={self.host}",
                    f"grpc_management_port={grpc_mgmt}",
                    "disable_token_authorization=true",
                    "enable_model_api=false",
                    "disable_system_metrics=true",
                    "default_workers_per_model=1",
                    "install_py_dep_per_model=false",
                    f"max_request_size={MAX_MESSAGE_BYTES}",
                    f"max_response_size={MAX_MESSAGE_BYTES}",
                    f"model_store={dirs['store']}",
                    f"vmargs=-Xmx{HEAP} -XX:+ExitOnOutOfMemoryError",
                ]
            )
            + "\n"
        )
        argv = [
            sys.executable, "-m", "ts.model_server",
            "--start", "--foreground", "--ncs", "--disable-token-auth",
            "--ts-config", str(config),
            "--log-config", str(log_config),
            "--model-store", str(dirs["store"]),
            "--models", *(f"{name}={name}.mar" for name in self.models),
        ]  # fmt: skip
        env = {
            **os.environ,
            "TMPDIR": str(dirs["tmp"]),
            "TEMP": str(dirs["tmp"]),
            "LOG_LOCATION": str(dirs["logs"]),
            "METRICS_LOCATION": str(dirs["metrics"]),
        }
        for s in held:
            s.close()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.home,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._started_at = time.monotonic()

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        """Waits until every model has a READY worker; returns the gRPC inference host:port."""
        if self._failed is not None:
            raise self._failed
        until = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.management_url, timeout=2.0) as client:
            while not await self._all_ready(client):
                self._check_alive()
                if time.monotonic() > until:
                    raise RunnerFailed(
                        f"torchserve: models not READY after {timeout:.0f} s\n{self._logs()}"
                    )
                await asyncio.sleep(0.1)
        self.ready_after_s = time.monotonic() - self._started_at
        self._remember_processes()
        return self.endpoint

    async def _all_ready(self, client: httpx.AsyncClient) -> bool:
        for name in self.models:
            try:
                reply = await client.get(f"/models/{name}")
            except httpx.HTTPError:
                return False
            if reply.status_code != 200:
                return False
            workers = [w for d in reply.json() for w in d.get("workers", [])]
            if not any(w.get("status") == "READY" for w in workers):
                return False
        return True

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RunnerFailed(
                f"torchserve exited with code {self.proc.returncode}\n{self._logs()}"
            )

    def _logs(self) -> str:
        return f"{log_tail(self.log_path)}\n--- {self.ts_log_path}:\n{log_tail(self.ts_log_path)}"

    def _remember_processes(self) -> None:
        """Notes the launcher's descendants so stop() can end them even if reparented."""
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                self._seen[p.pid] = p

    def processes(self) -> list[psutil.Process]:
        """The live processes of this instance: launcher, Java frontend, Python workers."""
        self._remember_processes()
        return [p for p in self._seen.values() if _running(p)]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL to whatever is left after `grace`; reaped."""
        if self.proc is None:
            return
        procs = self.processes()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace)
        if alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(alive, timeout=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)


def _version() -> str:
    try:
        return importlib.metadata.version("torchserve")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def launch(repository: Repository, workdir: Path, host: str) -> TorchServeRunner:
    """The LAUNCHERS entry for runner kind `torchserve`."""
    return TorchServeRunner(repository, workdir, host)
