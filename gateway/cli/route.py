"""CLI: `servegate route MODEL [...]`: a running gateway's routing policy and faults.

With no policy options it shows what is in force; with them it changes the policy at run
time through the admin route (no restart). `--fault VARIANT:key=value,...` injects a fault
and `--clear-fault VARIANT` clears it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gateway.cli.app import CaOpt, KeyOpt, UrlOpt, app, console, gateway_call

Many = Annotated[list[str] | None, typer.Option()]


def _fault(spec: str) -> tuple[str, dict[str, float]]:
    """`jax:delay_ms=50,delay_percent=10` -> ("jax", {...})."""
    variant, _, pairs = spec.partition(":")
    try:
        return variant, {k: float(v) for k, v in (p.split("=", 1) for p in pairs.split(","))}
    except ValueError:
        raise typer.BadParameter(f"--fault {spec!r}: VARIANT:key=value,...") from None


@app.command()
def route(
    model: Annotated[str, typer.Argument(help="The model whose routing to show or change.")],
    policy: Annotated[
        str | None, typer.Option(help="pinned, weighted, failover, fastest, hedged, mirror.")
    ] = None,
    default: Annotated[str | None, typer.Option(help="The default (primary) variant.")] = None,
    weight: Many = None,
    order: Many = None,
    shadow: Many = None,
    after_ms: Annotated[float | None, typer.Option(help="hedged: fixed delay.")] = None,
    after: Annotated[str | None, typer.Option(help="hedged: p50, p90, p95 or p99.")] = None,
    budget: Annotated[float | None, typer.Option(help="hedged: extra calls, a share.")] = None,
    fraction: Annotated[float | None, typer.Option(help="mirror: share copied.")] = None,
    json_doc: Annotated[
        str | None, typer.Option("--json", help="The whole routing as JSON instead.")
    ] = None,
    fault: Many = None,
    clear_fault: Many = None,
    url: UrlOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """Show or change MODEL's routing policy (and faults) in a running gateway.

    e.g. `servegate route digits --policy weighted --default onnx --weight onnx=90
    --weight jax=10`, `--policy hedged --default onnx --order jax --after p95`,
    `--policy mirror --default onnx --shadow jax`, `--fault jax:delay_ms=50,delay_percent=10`.
    """
    base = f"/admin/models/{model}"
    for spec in fault or []:
        variant, doc = _fault(spec)
        gateway_call(url, "PUT", f"{base}/variants/{variant}/fault", api_key, tls_ca, doc)
    for variant in clear_fault or []:
        gateway_call(url, "DELETE", f"{base}/variants/{variant}/fault", api_key, tls_ca)
    doc: dict[str, Any] | None = json.loads(json_doc) if json_doc else None
    if doc is None and policy is not None:
        current = gateway_call(url, "GET", f"{base}/routing", api_key, tls_ca)["routing"]
        doc = {"policy": policy, "default": default or current["default"]}
        if weight:
            doc["weights"] = {k: float(v) for k, v in (w.split("=", 1) for w in weight)}
        options = {
            "order": order, "shadows": shadow, "after_ms": after_ms, "after": after,
            "budget": budget, "fraction": fraction,
        }  # fmt: skip
        doc |= {key: value for key, value in options.items() if value}
    if doc is not None:
        gateway_call(url, "PUT", f"{base}/routing", api_key, tls_ca, doc)
    console.print_json(data=gateway_call(url, "GET", f"{base}/routing", api_key, tls_ca))
