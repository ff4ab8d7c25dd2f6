"""CLI: `servegate up | serve | infer | models build`. Turns flags into Settings and calls down.

Holds no serving logic: `up` is build (a child process) -> Supervisor -> server.Gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gateway import client
from gateway import doctor as doctor_checks
from gateway.config import (
    DEFAULT_REPOSITORY,
    Repository,
    RepositoryError,
    Settings,
    load_repository,
)
from gateway.protocol.framed import socket_path
from gateway.server import Gateway, build_dataplane
from gateway.supervisor import Probing, RunnerFailed, Supervisor, needed_runners
from gateway.supervisor.restarts import RestartPolicy
from gateway.supervisor.torchserve import TorchServeRunner

app = typer.Typer(
    help="servegate: one KServe v2 gateway over PyTorch, TensorFlow, ONNX and JAX.",
    no_args_is_help=True,
)
models_app = typer.Typer(help="Build and list the models of a repository.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()

RepoOpt = Annotated[Path, typer.Option(help="Model repository folder.")]


def _load(repository: Path) -> Repository:
    try:
        return load_repository(repository)
    except RepositoryError as exc:
        console.print(f"[red]model repository has errors:[/]\n{exc}")
        raise typer.Exit(2) from None


def _run_builder(repository: Path, names: list[str] | None = None, force: bool = False) -> None:
    argv = [sys.executable, "-m", "model_repo.builders", "--repository", str(repository)]
    for name in names or []:
        argv += ["--model", name]
    if force:
        argv.append("--force")
    if subprocess.call(argv) != 0:
        console.print("[red]model build failed[/]")
        raise typer.Exit(1)


@models_app.command("build")
def models_build(
    model: Annotated[list[str] | None, typer.Option(help="Only this model (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild what already exists.")] = False,
    repository: RepoOpt = DEFAULT_REPOSITORY,
) -> None:
    """Train or seed each model's weights and export every framework's artifact."""
    _run_builder(repository, model, force)


@models_app.command("list")
def models_list(repository: RepoOpt = DEFAULT_REPOSITORY) -> None:
    """The models, their variants and whether each artifact is built."""
    repo = _load(repository)
    table = Table("model", "variant", "runner", "artifact", "built")
    for name, model in repo.items():
        for vname, v in model.variants.items():
            path = repo.version_folder(name) / v.artifact
            default = " (default)" if vname == model.routing.default else ""
            table.add_row(
                name, vname + default, v.runner, str(path), "yes" if path.exists() else "no"
            )
    console.print(table)


async def _variant_table(
    repo: Repository, supervisor: Supervisor, gateway: Gateway, endpoints: dict[str, str]
) -> Table:
    """Every model's variants: which runner serves each, where, how the gateway reaches it,
    and whether it is ready."""
    table = Table("model", "variant", "runner", "endpoint", "hop", "pid", "start", "state")
    table.columns[3].no_wrap = True
    for name, model in repo.items():
        for vname, v in model.variants.items():
            proc = supervisor.runners.get(v.runner)
            ready = await gateway.dataplane.variant_ready(name, vname)
            used = v.endpoint or endpoints.get(v.runner, "")
            table.add_row(
                name,
                vname + (" (default)" if vname == model.routing.default else ""),
                proc.description if proc else v.runner,
                v.endpoint or (proc.endpoint if proc else "not started"),
                "framed unix socket" if socket_path(used) else "gRPC",
                str(proc.pid) if proc else "-",
                f"{proc.ready_after_s:.1f} s" if proc else "-",
                "[green]READY[/]" if ready else "[red]UNAVAILABLE[/]",
            )
    return table


def _example(repo: Repository, settings: Settings, http_port: int) -> str:
    name = next(iter(repo))
    spec = repo[name].signature.inputs[0]
    samples = repo.version_folder(name) / "samples.npz"
    if samples.exists():
        with np.load(samples) as f:
            row = f["inputs"][:1]
    else:
        row = np.zeros([1 if d == -1 else d for d in spec.shape], dtype=np.float32)
    doc = {
        "inputs": [
            {
                "name": spec.name,
                "datatype": spec.datatype,
                "shape": list(row.shape),
                "data": row.reshape(-1).tolist(),
            }
        ]
    }
    return (
        f"curl -s http://{settings.host}:{http_port}/v2/models/{name}/infer "
        f"-H 'Content-Type: application/json' -d '{json.dumps(doc)}'"
    )


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
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="servegate-run-"))
    supervisor = _supervisor(settings, repo, workdir, kinds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = None
    try:
        if kinds:
            with console.status(f"starting runners {kinds} (logs in {workdir})"):
                t0 = time.perf_counter()
                await supervisor.start(kinds)
            console.print(f"runners ready in {time.perf_counter() - t0:.1f} s")
        endpoints = {**supervisor.gateway_endpoints(), **external}
        key_files = {
            kind: r.key_file
            for kind, r in supervisor.runners.items()
            if isinstance(r, TorchServeRunner)
        }
        gateway = Gateway(build_dataplane(settings, repo, endpoints, key_files=key_files), settings)
        await gateway.start()
        supervisor.serve(gateway.dataplane)
        console.print(await _variant_table(repo, supervisor, gateway, endpoints))
        console.print(
            f"[bold green]servegate ready[/]  HTTP http://{settings.host}:{gateway.http_port}/v2  "
            f"gRPC {settings.host}:{gateway.grpc_port}  docs http://{settings.host}:{gateway.http_port}/docs"
        )
        console.print("try:\n  " + _example(repo, settings, gateway.http_port), soft_wrap=True)
        console.print("Ctrl-C stops the gateway and every runner.")
        if ready_file is not None:
            _write_ready_file(ready_file, gateway, supervisor, endpoints)
        await stop.wait()
        console.print("stopping: draining requests in flight...")
    finally:
        if gateway is not None:
            await gateway.stop()
        await supervisor.aclose()
        shutil.rmtree(workdir, ignore_errors=True)  # logs, sockets, port files, caches


def _write_ready_file(
    path: Path, gateway: Gateway, supervisor: Supervisor, endpoints: dict[str, str]
) -> None:
    """What scripts and tests need to find a `servegate up` started on port 0. A runner's
    `endpoint` is its gRPC address; `gateway_endpoint` is where the gateway forwards."""
    doc = {
        "gateway_pid": os.getpid(),
        "http_port": gateway.http_port,
        "grpc_port": gateway.grpc_port,
        "runners": {
            k: {
                "endpoint": r.endpoint,
                "socket": str(r.socket_path) if r.socket_path else None,
                "gateway_endpoint": endpoints.get(k, r.endpoint),
                "pid": r.pid,
                "ready_after_s": r.ready_after_s,
                "description": r.description,
            }
            for k, r in supervisor.runners.items()
        },
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def _logging(settings: Settings) -> None:
    """The gateway's and the supervisor's log lines (runner deaths, restarts, hangs) on
    stderr; uvicorn keeps its own."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address the gateway binds.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP port (0: any free one).")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: any free one).")] = 8001,
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
    repository: RepoOpt = DEFAULT_REPOSITORY,
) -> None:
    """Build what is missing, start the runners and the gateway; Ctrl-C stops them all."""
    if build:
        _run_builder(repository)
    settings = Settings(host=host, http_port=http_port, grpc_port=grpc_port, repository=repository)
    if runner_sockets is not None:  # the flag, when given, overrides the environment
        settings = settings.model_copy(update={"runner_sockets": runner_sockets})
    if standby:
        settings = settings.model_copy(update={"standby": ",".join(standby)})
    repo = _load(repository)
    kinds = runner if runner else needed_runners(repo)
    _logging(settings)
    try:
        _run(_serve(settings, repo, kinds, {}, ready_file))
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
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    http_port: Annotated[int, typer.Option()] = 8000,
    grpc_port: Annotated[int, typer.Option()] = 8001,
    repository: RepoOpt = DEFAULT_REPOSITORY,
) -> None:
    """The gateway alone, in front of runners started elsewhere (containers)."""
    endpoints: dict[str, str] = {}
    for item in runner_endpoint:
        kind, _, address = item.partition("=")
        endpoints[kind] = f"{endpoints[kind]},{address}" if kind in endpoints else address
    settings = Settings(host=host, http_port=http_port, grpc_port=grpc_port, repository=repository)
    _logging(settings)
    _run(_serve(settings, _load(repository), [], endpoints))


@app.command()
def infer(
    model: Annotated[str, typer.Argument(help="Model name, or MODEL@VARIANT.")] = "digits",
    protocol: Annotated[str, typer.Option(help="http (JSON), binary, or grpc.")] = "http",
    url: Annotated[str, typer.Option(help="Gateway HTTP URL.")] = "http://127.0.0.1:8000",
    grpc_address: Annotated[str, typer.Option(help="Gateway gRPC address.")] = "127.0.0.1:8001",
    variant: Annotated[str | None, typer.Option(help="Pin a variant.")] = None,
    sample: Annotated[int, typer.Option(help="Which held-out sample to send.")] = 0,
    input_file: Annotated[Path | None, typer.Option(help=".npy file to send instead.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="SERVEGATE_API_KEY", help="Key for a gateway with keys.")
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA certificate of a TLS gateway (use an https URL).")
    ] = None,
    repository: RepoOpt = DEFAULT_REPOSITORY,
) -> None:
    """Send one request (a held-out sample by default) and print the answer."""
    if protocol not in client.PROTOCOLS:
        raise typer.BadParameter(f"protocol must be one of {client.PROTOCOLS}")
    repo = _load(repository)
    base = model.partition("@")[0]
    if base not in repo:
        console.print(f"[red]unknown model {base!r}[/]")
        raise typer.Exit(2)
    spec = repo[base].signature.inputs[0]
    label = None
    if input_file is not None:
        data = np.load(input_file)
    else:
        with np.load(repo.version_folder(base) / "samples.npz") as f:
            data, label = f["inputs"][sample : sample + 1], int(f["labels"][sample])
    inputs = {spec.name: data.astype(np.dtype(data.dtype))}
    t0 = time.perf_counter()
    try:
        if protocol == "grpc":
            with client.grpc_channel(grpc_address, ca=tls_ca) as channel:
                response = client.infer_grpc(
                    channel, model, inputs, variant=variant, api_key=api_key
                )
        else:
            with client.http_client(url, api_key=api_key, ca=tls_ca) as http:
                response = client.infer_http(
                    http, model, inputs, binary=protocol == "binary", variant=variant
                )
    except (client.ClientError, httpx.HTTPError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    elapsed = (time.perf_counter() - t0) * 1000
    for t in response.outputs:
        console.print(
            f"{t.name} {t.datatype} {list(t.shape)}: {np.array2string(t.data, precision=3)}"
        )
        if t.data.ndim == 2 and t.data.dtype.kind == "f":
            console.print(
                f"predicted class: {t.data.argmax(axis=1).tolist()}"
                + (f" (label {label})" if label is not None else "")
            )
    console.print(f"variant: {response.parameters.get('variant', '?')}, {elapsed:.1f} ms")


@app.command()
def doctor(
    install: Annotated[
        list[str] | None, typer.Option(help="Install a tool: perf_analyzer (repeatable).")
    ] = None,
) -> None:
    """What this machine has for servegate (frameworks, Java, perf_analyzer, Docker, GPU)."""
    for tool in install or []:
        if tool != "perf_analyzer":
            console.print(f"[red]unknown tool {tool!r}; known: perf_analyzer[/]")
            raise typer.Exit(2)
        with console.status("installing perf_analyzer (tritonclient 2.50.0's binary)"):
            try:
                path = doctor_checks.install_perf_analyzer()
            except doctor_checks.ToolError as exc:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(1) from None
        console.print(f"perf_analyzer installed: {path}")
    table = Table("what", "here")
    for what, state in doctor_checks.report():
        table.add_row(what, state)
    console.print(table)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Load-test matrix and report in reports/ (`bench --help`); `bench compare A B` diffs two."""
    # A program of its own: Locust and gevent never enter the gateway's process.
    raise typer.Exit(subprocess.call([sys.executable, "-m", "loadtests.bench", *ctx.args]))
