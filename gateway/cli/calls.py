"""CLI: `servegate infer`: one request to a running gateway, as a client sends it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer

from gateway import client
from gateway.cli.app import RepoOpt, _load, app, console
from gateway.config import (
    DEFAULT_REPOSITORY,
)


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
