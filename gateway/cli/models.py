"""CLI: `servegate models build | import | list | load | unload`: the model repository, on
disk and in a running gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.app import (
    CaOpt,
    KeyOpt,
    RepoOpt,
    UrlOpt,
    _load,
    console,
    gateway_call,
    models_app,
)
from gateway.config import DEFAULT_REPOSITORY


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
def models_list(
    repository: RepoOpt = DEFAULT_REPOSITORY,
    url: Annotated[
        str | None, typer.Option(help="A running gateway: list what it serves instead.")
    ] = None,
    api_key: KeyOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """The models, their variants and whether each artifact is built; with --url, the
    running gateway's repository index (loaded and ready, or why not)."""
    if url is not None:
        index = gateway_call(url, "POST", "/v2/repository/index", api_key, tls_ca, {})
        table = Table("model", "version", "state", "reason")
        for e in index:  # type: ignore[attr-defined]
            table.add_row(e["name"], e.get("version", ""), e["state"], e.get("reason", ""))
        console.print(table)
        return
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


@models_app.command("load")
def models_load(
    name: str, url: UrlOpt = "http://127.0.0.1:8000", api_key: KeyOpt = None, tls_ca: CaOpt = None
) -> None:
    """Load (or reload) a model in a running gateway from its folder: a changed model.yaml
    or new versions, swapped in without losing a request."""
    gateway_call(
        url, "POST", f"/v2/repository/models/{name}/load", api_key, tls_ca, {}, timeout=300
    )
    console.print(f"model {name} loaded")


@models_app.command("unload")
def models_unload(
    name: str, url: UrlOpt = "http://127.0.0.1:8000", api_key: KeyOpt = None, tls_ca: CaOpt = None
) -> None:
    """Stop serving a model in a running gateway, once its requests in flight are answered."""
    gateway_call(
        url, "POST", f"/v2/repository/models/{name}/unload", api_key, tls_ca, {}, timeout=300
    )
    console.print(f"model {name} unloaded")


@models_app.command(
    "import",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def models_import(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="ONNX, TorchScript, .pt2, SavedModel or jax.export.")
    ],
    name: Annotated[str, typer.Option(help="The model's name in the repository.")],
    repository: RepoOpt = DEFAULT_REPOSITORY,
) -> None:
    """Turn one model into four parity-checked framework variants (onnx, jax, tensorflow,
    pytorch) in the repository. Further flags (--variants, --version, --rtol, --atol,
    --input-shape, --samples, ...) go to the importer: `python -m model_repo.importer
    import --help` lists them."""
    # A program of its own: the converters never enter the gateway's process.
    argv = [sys.executable, "-m", "model_repo.importer", "import", str(source), "--name", name,
            "--repository", str(repository), *ctx.args]  # fmt: skip
    raise typer.Exit(subprocess.call(argv))
