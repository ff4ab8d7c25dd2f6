"""CLI: `servegate up` (build, runners, gateway) and `servegate serve` (the gateway alone).

`up` is build (a child process) -> Supervisor -> server.Gateway, with the repository
lifecycle and, on request, a poll of the repository folder.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway import eventloop
from gateway.cli.app import _load, _logging, app, console
from gateway.cli.models import _run_builder
from gateway.cli.ready import Ready, example, variant_table, write_ready_file
from gateway.config import (
    DEFAULT_REPOSITORY,
    Repository,
    Settings,
)
from gateway.fleet.primary import Fleet
from gateway.lifecycle import Lifecycle
from gateway.lifecycle import poll as poll_repository
from gateway.server import Gateway, build_dataplane
from gateway.supervisor import Probing, RunnerFailed, Supervisor, needed_runners
from gateway.supervisor.restarts import RestartPolicy
from gateway.supervisor.torchserve import TorchServeRunner


def _supervisor(
    settings: Settings, repo: Repository, workdir: Path, kinds: list[str]
) -> Supervisor:
    wanted = {k.strip() for k in settings.standby.split(",") if k.strip()}
    return Supervisor(
        repo,
        workdir,
        host="127.0.0.1",
        framed=settings.runner_sockets,
        standby=set(kinds) if "all" in wanted else wanted,
        policy=RestartPolicy(
            backoff_s=settings.restart_backoff_s,
            crash_loop_deaths=settings.crash_loop_deaths,
            crash_loop_window_s=settings.crash_loop_window_s,
        ),
        probing=Probing(
            interval_s=settings.probe_interval_s,
            timeout_s=settings.probe_timeout_s,
            failures=settings.probe_failures,
        ),
    )


async def _serve(
    settings: Settings,
    repo: Repository,
    kinds: list[str],
    external: dict[str, str],
    ready_file: Path | None = None,
    poll_s: float | None = None,
    *,
    external_keys: dict[str, Path] | None = None,
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="servegate-run-"))
    supervisor = _supervisor(settings, repo, workdir, kinds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    front: Gateway | Fleet | None = None
    try:
        if kinds:
            with console.status(f"starting runners {kinds} (logs in {workdir})"):
                t0 = time.perf_counter()
                await supervisor.start(kinds)
            console.print(f"runners ready in {time.perf_counter() - t0:.1f} s")
        endpoints = {**supervisor.gateway_endpoints(), **external}
        key_files = {
            **{kind: r.key_file for kind, r in supervisor.runners.items()
               if isinstance(r, TorchServeRunner)},
            **(external_keys or {}),
        }  # fmt: skip
        ready: Ready
        if settings.workers > 1:
            front = Fleet(
                settings, repo, workdir, workers=settings.workers, supervisor=supervisor,
                endpoints=endpoints, key_files=key_files,
            )  # fmt: skip
            with console.status(f"starting {settings.workers} gateway workers"):
                await front.start()
            lifecycle: Lifecycle = front.lifecycle
            ready = front.variant_ready
        else:
            dataplane = build_dataplane(settings, repo, endpoints, key_files=key_files)
            lifecycle = Lifecycle.local(
                dataplane, repo.root, runners=supervisor, drain_s=settings.shutdown_grace_s
            )
            front = Gateway(dataplane, settings, lifecycle)
            await front.start()
            supervisor.serve(front.dataplane)
            ready = front.dataplane.variant_ready
        http, grpc_port = front.http_port, front.grpc_port
        console.print(await variant_table(repo, supervisor, ready, endpoints))
        workers = f"  {settings.workers} workers" if settings.workers > 1 else ""
        console.print(
            f"[bold green]servegate ready[/]  HTTP http://{settings.host}:{http}/v2  "
            f"gRPC {settings.host}:{grpc_port}  docs http://{settings.host}:{http}/docs{workers}"
        )
        console.print("try:\n  " + example(repo, settings, http), soft_wrap=True)
        console.print("Ctrl-C stops the gateway and every runner.")
        if ready_file is not None:
            write_ready_file(ready_file, front, supervisor, endpoints)
        watcher = asyncio.create_task(poll_repository(lifecycle, poll_s)) if poll_s else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        console.print("stopping: draining requests in flight...")
    finally:
        if front is not None:
            await front.stop()
        await supervisor.aclose()
        shutil.rmtree(workdir, ignore_errors=True)  # logs, sockets, port files, caches


WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Gateway processes sharing the ports (SO_REUSEPORT), each with its own batchers "
        "and runner connections (default 1; env SERVEGATE_WORKERS).",
    ),
]


def _with_workers(settings: Settings, workers: int | None) -> Settings:
    """The flag, when given, overrides SERVEGATE_WORKERS."""
    return settings if workers is None else settings.model_copy(update={"workers": workers})


HostOpt = Annotated[
    str | None, typer.Option(help="Address the gateway binds (127.0.0.1; env SERVEGATE_HOST).")
]
HttpPortOpt = Annotated[
    int | None, typer.Option(help="HTTP port, 0 for any free one (8000; SERVEGATE_HTTP_PORT).")
]
GrpcPortOpt = Annotated[
    int | None, typer.Option(help="gRPC port, 0 for any free one (8001; SERVEGATE_GRPC_PORT).")
]
ServedRepoOpt = Annotated[
    Path | None,
    typer.Option(help=f"Model repository folder ({DEFAULT_REPOSITORY}; SERVEGATE_REPOSITORY)."),
]


def _settings(
    host: str | None, http_port: int | None, grpc_port: int | None, repository: Path | None
) -> Settings:
    """The SERVEGATE_* settings, with the flags that were given on top."""
    given = {"host": host, "http_port": http_port, "grpc_port": grpc_port,
             "repository": repository}  # fmt: skip
    return Settings(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]


@app.command()
def up(
    host: HostOpt = None,
    http_port: HttpPortOpt = None,
    grpc_port: GrpcPortOpt = None,
    runner: Annotated[
        list[str] | None, typer.Option(help="Start only these runners (repeatable).")
    ] = None,
    build: Annotated[bool, typer.Option(help="Build missing model artifacts first.")] = True,
    ready_file: Annotated[
        Path | None, typer.Option(help="Write ports and runner pids here (JSON) once ready.")
    ] = None,
    standby: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep a warm second instance of this runner kind (repeatable, or 'all'); "
            "it takes over at once when the first dies (env SERVEGATE_STANDBY)."
        ),
    ] = None,
    runner_sockets: Annotated[
        bool | None,
        typer.Option(
            help="Reach the local onnx/jax runners over their framed Unix socket, not gRPC "
            "(default on; env SERVEGATE_RUNNER_SOCKETS)."
        ),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(
            help="Watch the repository every SECONDS: load a model whose folder changed "
            "(model.yaml, a new version), unload one whose model.yaml is gone."
        ),
    ] = None,
    workers: WorkersOpt = None,
    repository: ServedRepoOpt = None,
) -> None:
    """Build what is missing, start the runners and the gateway; Ctrl-C stops them all."""
    settings = _settings(host, http_port, grpc_port, repository)
    if build:
        _run_builder(settings.repository)
    if runner_sockets is not None:  # the flag, when given, overrides the environment
        settings = settings.model_copy(update={"runner_sockets": runner_sockets})
    if standby:
        settings = settings.model_copy(update={"standby": ",".join(standby)})
    settings = _with_workers(settings, workers)
    repo = _load(settings.repository)
    kinds = runner if runner else needed_runners(repo)
    _logging(settings)
    try:
        eventloop.run(_serve(settings, repo, kinds, {}, ready_file, poll))
    except RunnerFailed as exc:
        console.print(f"[red]runner failed:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def serve(
    runner_endpoint: Annotated[
        list[str],
        typer.Option(
            help="KIND=host:port of a running runner (repeat a kind for its replicas, or "
            "KIND=dns:///name:port for every address a name resolves to)."
        ),
    ],
    runner_key_file: Annotated[
        list[str] | None,
        typer.Option(
            help="KIND=PATH: the key file of a TorchServe started elsewhere with its token "
            "authorization on (the gateway reads its inference key from it)."
        ),
    ] = None,
    host: HostOpt = None,
    http_port: HttpPortOpt = None,
    grpc_port: GrpcPortOpt = None,
    workers: WorkersOpt = None,
    repository: ServedRepoOpt = None,
) -> None:
    """The gateway alone, in front of runners started elsewhere (containers)."""
    endpoints: dict[str, str] = {}
    for item in runner_endpoint:
        kind, _, address = item.partition("=")
        endpoints[kind] = f"{endpoints[kind]},{address}" if kind in endpoints else address
    keys: dict[str, Path] = {}
    for item in runner_key_file or []:
        kind, sep, path = item.partition("=")
        if not sep or not path:
            raise typer.BadParameter(
                f"'{item}': expected KIND=PATH", param_hint="--runner-key-file"
            )
        keys[kind] = Path(path)
    settings = _with_workers(_settings(host, http_port, grpc_port, repository), workers)
    _logging(settings)
    eventloop.run(_serve(settings, _load(settings.repository), [], endpoints, external_keys=keys))
