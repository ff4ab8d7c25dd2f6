"""Supervisor: how each runner kind starts locally, from its registry entry (gateway/kinds.py).

Three shapes of process: one of our runners (`python -m <module>`, the runner command
line of runners/host.py), the real TorchServe (torchserve.py), and a TF Serving binary
found on PATH (tfserving.py), preferred over the module where the kind names one.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.config import Repository
from gateway.kinds import RunnerKind
from gateway.supervisor.process import Runner, RunnerFailed, RunnerProcess
from gateway.supervisor.tfserving import model_server
from gateway.supervisor.torchserve import TorchServeRunner

# AF_UNIX paths are limited to 108 bytes (sun_path) on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107

# A server program a kind prefers when PATH has it -> how to run it.
BINARIES: dict[str, Callable[[Repository, Path, str, str], Runner]] = {
    "tensorflow_model_server": model_server,
}


def module_runner(
    kind: RunnerKind, repository: Repository, workdir: Path, host: str, name: str = ""
) -> Runner:
    """`python -m <kind.module>` with the shared runner command line; a framed kind also
    serves `<workdir>/<kind>.sock`, unless that path is too long for AF_UNIX; a kind with
    a compile cache keeps it in `<workdir>/cache/<kind>`, which outlives its restarts."""
    argv = [
        sys.executable, "-m", kind.module,
        "--repository", str(repository.root), "--host", host,
    ]  # fmt: skip
    name = name or kind.name
    sock: Path | None = workdir.absolute() / f"{name}.sock"
    if not kind.framed or len(str(sock)) > MAX_SOCKET_PATH:
        sock = None
    else:
        argv += ["--socket", str(sock)]
    env = dict(kind.env)
    if kind.cache_env:
        env[kind.cache_env] = str(workdir.absolute() / "cache" / kind.name)
    return RunnerProcess(
        name, argv, workdir, env=env, description=kind.description, socket_path=sock
    )


def launch(
    kind: RunnerKind, repository: Repository, workdir: Path, host: str, name: str = ""
) -> Runner:
    """The local runner for `kind` (not yet spawned). `name` tells a second instance of a
    kind (a standby) from the first: its files, sockets and ports are its own."""
    if kind.launch is None:
        raise RunnerFailed(f"runner kind '{kind.name}' is never started locally")
    name = name or kind.name
    if kind.binary and (path := shutil.which(kind.binary)):
        return BINARIES[kind.binary](repository, workdir / name, host, path)
    if kind.launch == "torchserve":
        return TorchServeRunner(repository, workdir, host, name)
    return module_runner(kind, repository, workdir, host, name)
