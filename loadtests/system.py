"""Load tests: the system under test: a running gateway, or one `servegate up` the bench starts.

Either way the bench ends up with a `System`: where the gateway listens (HTTP, gRPC),
where each runner listens (for direct-to-runner cells), and which processes to sample.
A started system is `servegate up --http-port 0 --grpc-port 0 --ready-file F` as a child
process; readiness is that file appearing, and `stop()` asks it to stop (SIGTERM, which
stops its runners too), then kills what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from gateway.config import Repository
from gateway.supervisor.process import log_tail


@dataclass(frozen=True)
class RunnerInfo:
    """One runner process (kind as in model.yaml's `runner:`)."""

    kind: str
    endpoint: str
    pid: int | None = None
    ready_after_s: float | None = None
    description: str = ""
    key_file: str | None = None  # TorchServe's token-authorization keys (direct calls need one)


@dataclass
class System:
    """Addresses and processes of the gateway and its runners."""

    http_url: str
    grpc_address: str
    gateway_pid: int | None = None
    runners: dict[str, RunnerInfo] = field(default_factory=dict)
    started_s: float | None = None  # spawn -> ready file, when the bench started it

    def direct_endpoint(self, repository: Repository, model: str, variant: str) -> str | None:
        """Where the runner serving `model@variant` listens, if known."""
        config = repository[model].variants[variant]
        if config.endpoint:
            return config.endpoint
        runner = self.runners.get(config.runner)
        return runner.endpoint if runner else None

    def key_file(self, repository: Repository, model: str, variant: str) -> str | None:
        """The key file of the local runner serving `model@variant` (TorchServe's token
        authorization), if it has one."""
        config = repository[model].variants[variant]
        runner = None if config.endpoint else self.runners.get(config.runner)
        return runner.key_file if runner else None

    def processes(self) -> dict[str, list[psutil.Process]]:
        """label -> live processes: the gateway, each runner and its children (TorchServe's
        frontend and workers), found afresh on each call since workers can restart."""
        out: dict[str, list[psutil.Process]] = {}
        if self.gateway_pid:
            _add(out, "gateway", self.gateway_pid, children=False)
        for kind, runner in self.runners.items():
            if runner.pid:
                _add(out, kind, runner.pid, children=True)
        return out


def _add(out: dict[str, list[psutil.Process]], kind: str, pid: int, *, children: bool) -> None:
    try:
        root = psutil.Process(pid)
        procs = [root, *(root.children(recursive=True) if children else [])]
    except psutil.Error:
        return
    for p in procs:
        label = kind if p.pid == pid else f"{kind}/{_role(p)}"
        out.setdefault(label, []).append(p)


def _role(p: psutil.Process) -> str:
    """A child's role in words: TorchServe's Java frontend and Python workers."""
    try:
        name, cmdline = p.name(), " ".join(p.cmdline())
    except psutil.Error:
        return "child"
    if "model_service_worker" in cmdline:
        return "worker"
    if name == "java":
        return "frontend"
    return name


def read_ready_file(path: Path, host: str = "127.0.0.1") -> System:
    """A System from `servegate up --ready-file`'s JSON."""
    doc: dict[str, Any] = json.loads(path.read_text())
    runners = {
        kind: RunnerInfo(
            kind,
            str(r["endpoint"]),
            r.get("pid"),
            r.get("ready_after_s"),
            str(r.get("description", "")),
            r.get("key_file"),
        )
        for kind, r in doc.get("runners", {}).items()
    }
    return System(
        http_url=f"http://{host}:{doc['http_port']}",
        grpc_address=f"{host}:{doc['grpc_port']}",
        gateway_pid=doc.get("gateway_pid"),  # when `servegate up` writes it
        runners=runners,
    )


class SystemStartFailed(RuntimeError):
    """`servegate up` exited or did not get ready; the message carries its log's tail."""


class LocalSystem:
    """`servegate up` as a child process, on free ports, stopped by `stop()`."""

    def __init__(
        self,
        repository: Path,
        workdir: Path,
        runner_kinds: Sequence[str],
        *,
        build: bool = True,
        timeout_s: float = 300.0,
    ) -> None:
        self.workdir = workdir
        self.ready_file = workdir / "ready.json"
        self.log_path = workdir / "servegate-up.log"
        self.argv = [
            sys.executable, "-m", "gateway", "up",
            "--http-port", "0", "--grpc-port", "0",
            "--ready-file", str(self.ready_file),
            "--repository", str(repository),
            *(a for kind in runner_kinds for a in ("--runner", kind)),
            *([] if build else ["--no-build"]),
        ]  # fmt: skip
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.system: System | None = None

    def start(self) -> System:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # the bench, not the terminal, decides when it stops
                env={**os.environ, "COLUMNS": "160"},
            )
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise SystemStartFailed(
                    f"servegate up exited with code {code}\n{log_tail(self.log_path, 30)}"
                )
            if time.monotonic() - t0 > self.timeout_s:
                self.stop()
                raise SystemStartFailed(f"servegate up not ready after {self.timeout_s:.0f} s")
            time.sleep(0.1)
        system = read_ready_file(self.ready_file)
        system.gateway_pid = self.proc.pid
        system.started_s = time.monotonic() - t0
        self.system = system
        return system

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (servegate up stops the gateway, then its runners); SIGKILL if stuck."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            # runners live in sessions of their own: end them too
            for runner in self.system.runners.values() if self.system else ():
                if runner.pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(runner.pid, signal.SIGKILL)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
