"""Supervisor: the real TorchServe 0.12 (Java frontend + Python workers) as one local runner.

Everything TorchServe would share with another instance on the machine is made private to
this one, under `<workdir>/torchserve/`: the generated config.properties and log4j2.xml
(torchserve_config.py), a model store of hard links to each model's `<version>/model.mar`,
TMPDIR/TEMP (PID file, worker sockets, extracted archives), LOG_LOCATION and
METRICS_LOCATION, and its token-authorization key file. All five listeners bind `host`
(loopback by default); config snapshots are off; the JVM heap is bounded. Token
authorization stays on: the gateway reads the keys TorchServe writes at each start
(backends/torchserve_keys.py): the inference key for predictions, the management key
for worker status.

Ports: TorchServe cannot bind port 0 and report what it got, so five consecutive free
ports are chosen here, at random below the kernel's ephemeral range (where port-0 servers
and outgoing connections cannot take them first), held bound until just before the start,
and kept across restarts so the gateway reaches a restarted TorchServe where it was. The
gRPC management port is always the gRPC inference port + 1, TorchServe's own default
layout (7070/7071), which is what the gateway's backend derives it from.

TorchServe runs under runners/guard.py, which ends the launcher, the Java frontend and the
workers together when the gateway stops or dies. Ready, and healthy: every registered
model has a worker whose status is READY in the management API (/ping says Healthy while
no worker lives).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from gateway.backends.torchserve_keys import read_keys
from gateway.config import Repository
from gateway.supervisor.process import ChildProcess, RunnerFailed, log_tail
from gateway.supervisor.torchserve_config import LOG4J2, config_properties, url

GUARD_GRACE_S = 8.0
SCAN_S = 10.0
"""How often a passing probe also notes the instance's processes (a /proc scan)."""


def torchserve_models(repository: Repository) -> dict[str, dict[str, Path]]:
    """Model name -> version -> .mar of its local torchserve variant, for every version
    model.yaml serves (TorchServe keeps the versions of one model name apart)."""
    models: dict[str, dict[str, Path]] = {}
    for model in repository.values():
        local = [v for v in model.variants.values() if v.runner == "torchserve" and not v.endpoint]
        if len(local) > 1:
            raise RunnerFailed(f"model {model.name} has {len(local)} torchserve variants; one fits")
        if local:
            models[model.name] = {
                version: repository.version_folder(model.name, version) / local[0].artifact
                for version in model.versions
            }
    return models


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


class TorchServeRunner(ChildProcess):
    """One TorchServe instance serving every model that has a local torchserve variant."""

    def __init__(
        self, repository: Repository, workdir: Path, host: str, name: str = "torchserve"
    ) -> None:
        super().__init__(name, workdir, description=f"TorchServe {_version()}")
        self.models = torchserve_models(repository)
        self.host = host
        self.home = workdir / name
        self.ts_log_path = self.home / "logs" / "ts_log.log"  # everything, workers' too
        self.key_file: Path | None = self.home / "key_file.json"  # written at each start
        self.ports: range | None = None
        self.management_url = ""
        self.inference_url = ""
        self.grpc_management_endpoint = ""
        self._seen: dict[int, psutil.Process] = {}
        self._scanned = 0.0
        self._failed: RunnerFailed | None = None  # from spawn, raised by wait_ready

    def spawn(self, *, fresh_ports: bool = False) -> None:
        """Starts TorchServe; a problem found here is raised by wait_ready (as other
        runners report theirs), so the Supervisor stops whatever it started beside."""
        self._failed = None
        try:
            self._spawn(fresh_ports)
        except RunnerFailed as exc:
            self._failed = exc

    def _spawn(self, fresh_ports: bool) -> None:
        if not self.models:
            raise RunnerFailed("torchserve: no model has a local torchserve variant")
        dirs = {d: self.home / d for d in ("store", "tmp", "logs", "metrics")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        archives: list[str] = []
        for name, versions in self.models.items():
            for version, mar in versions.items():
                if not mar.is_file():
                    raise RunnerFailed(
                        f"torchserve: {mar} is missing; run `servegate models build`"
                    )
                link = dirs["store"] / f"{name}-v{version}.mar"
                link.unlink(missing_ok=True)
                try:
                    os.link(mar, link)
                except OSError:  # another file system: copy
                    link.write_bytes(mar.read_bytes())
                archives.append(f"{name}={link.name}")
        held: list[socket.socket] = []
        if fresh_ports or self.ports is None:
            held, base = _free_ports(self.host)
            self.ports = range(base, base + 5)
        rest, mgmt, _, grpc_inf, grpc_mgmt = self.ports
        self.inference_url = url(self.host, rest)
        self.management_url = url(self.host, mgmt)
        self.endpoint = f"{self.host}:{grpc_inf}"
        self.grpc_management_endpoint = f"{self.host}:{grpc_mgmt}"
        log_config = self.home / "log4j2.xml"
        log_config.write_text(LOG4J2)
        config = self.home / "config.properties"
        config.write_text(config_properties(self.host, self.ports, dirs["store"]))
        assert self.key_file is not None
        self.key_file.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "runners.guard", "--grace", str(GUARD_GRACE_S), "--",
            sys.executable, "-m", "ts.model_server",
            "--start", "--foreground", "--ncs",
            "--ts-config", str(config),
            "--log-config", str(log_config),
            "--model-store", str(dirs["store"]),
            "--models", *archives,
        ]  # fmt: skip
        self.env = {
            "TMPDIR": str(dirs["tmp"]),
            "TEMP": str(dirs["tmp"]),
            "LOG_LOCATION": str(dirs["logs"]),
            "METRICS_LOCATION": str(dirs["metrics"]),
        }
        for s in held:
            s.close()
        self._seen.clear()
        self._popen(argv, cwd=self.home)

    def management_headers(self) -> dict[str, str]:
        key = read_keys(self.key_file).get("management") if self.key_file else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        """Waits until every model has a READY worker; returns the gRPC inference host:port."""
        if self._failed is not None:
            raise self._failed
        until = time.monotonic() + timeout
        while not await self.probe(2.0):
            self._check_alive()
            if time.monotonic() > until:
                raise RunnerFailed(
                    f"torchserve: models not READY after {timeout:.0f} s\n{self.log_tail()}"
                )
            await asyncio.sleep(0.1)
        self.ready_after_s = time.monotonic() - self.started_at
        return self.endpoint

    async def probe(self, timeout: float) -> bool:
        """True while every model has a READY worker (the management API, with its key)."""
        headers = self.management_headers()
        if not headers:
            return False
        # verify=False: the management API is plain HTTP on loopback, and a default client
        # loads the system CA store (~30 ms of CPU) for every probe.
        async with httpx.AsyncClient(
            base_url=self.management_url, timeout=timeout, headers=headers, verify=False
        ) as client:
            for name in self.models:
                try:
                    reply = await client.get(f"/models/{name}")
                    workers = [w for d in reply.json() for w in d.get("workers", [])]
                except (httpx.HTTPError, ValueError, TypeError, AttributeError):
                    return False
                if reply.status_code != 200 or not any(w.get("status") == "READY" for w in workers):
                    return False
        if time.monotonic() - self._scanned >= SCAN_S:
            self._remember_processes()
        return True

    def log_tail(self, lines: int = 20) -> str:
        tail = super().log_tail(lines)
        return f"{tail}\n--- {self.ts_log_path}:\n{log_tail(self.ts_log_path, lines)}"

    def _remember_processes(self) -> None:
        """Notes the guard's descendants so kill() can end them even if reparented."""
        self._scanned = time.monotonic()
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                self._seen.setdefault(p.pid, p)

    def processes(self) -> list[psutil.Process]:
        """The live processes of this instance: guard, launcher, Java frontend, workers."""
        self._remember_processes()
        return [p for p in self._seen.values() if _running(p)]

    def kill(self) -> None:
        """SIGKILL to the guard and every process of this instance it has seen."""
        procs = self.processes()
        super().kill()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=5)

    def stop(self, grace: float = GUARD_GRACE_S + 4) -> None:
        """SIGTERM to the guard (it drains TorchServe, then kills what is left);
        SIGKILL to everything after `grace`; always reaped."""
        if self.proc is None:
            return
        procs = self.processes()
        super().stop(grace)
        _, alive = psutil.wait_procs(procs, timeout=1)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
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
