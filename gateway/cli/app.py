"""CLI: the `servegate` Typer app, its shared options, and what every command needs.

The commands live by what they do: up.py (serve), models.py (the repository),
calls.py (requests to a gateway), tools.py (doctor, bench). None holds serving logic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from gateway import client
from gateway.config import Repository, RepositoryError, Settings, load_repository

app = typer.Typer(
    help="servegate: one KServe v2 gateway over PyTorch, TensorFlow, ONNX and JAX.",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="The model repository: build, import, list, and load/unload in a running gateway.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
console = Console()

RepoOpt = Annotated[Path, typer.Option(help="Model repository folder.")]
UrlOpt = Annotated[str, typer.Option(help="Gateway HTTP URL.")]
KeyOpt = Annotated[
    str | None, typer.Option(envvar="SERVEGATE_API_KEY", help="An admin key, if keys are set.")
]
CaOpt = Annotated[Path | None, typer.Option(help="CA certificate of a TLS gateway.")]


def _load(repository: Path) -> Repository:
    try:
        return load_repository(repository)
    except RepositoryError as exc:
        console.print(f"[red]model repository has errors:[/]\n{exc}")
        raise typer.Exit(2) from None


def _logging(settings: Settings) -> None:
    """The gateway's and the supervisor's log lines (runner deaths, restarts, hangs) on
    stderr; uvicorn keeps its own."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def gateway_call(
    url: str,
    method: str,
    path: str,
    api_key: str | None,
    ca: Path | None,
    doc: Any = None,
    *,
    timeout: float = 30,
) -> Any:
    """One call to a running gateway's admin or repository routes; its JSON answer, or
    the error printed and exit 1."""
    try:
        with client.http_client(url, timeout=timeout, api_key=api_key, ca=ca) as http:
            reply = http.request(method, path, json=doc)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {exc}[/]")
        raise typer.Exit(1) from None
    if reply.status_code != 200:
        console.print(f"[red]{reply.status_code}: {reply.json().get('error', reply.text)}[/]")
        raise typer.Exit(1)
    return reply.json()
