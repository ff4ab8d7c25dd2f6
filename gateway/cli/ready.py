"""CLI: what `servegate up` says once it serves: the variant table, a request to try, and
the ready file that scripts and tests read (ports, pids)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from rich.table import Table

from gateway.config import Repository, Settings
from gateway.fleet.primary import Fleet
from gateway.protocol.framed import socket_path
from gateway.server import Gateway
from gateway.supervisor import Supervisor

Ready = Callable[[str, str], Awaitable[bool]]


async def variant_table(
    repo: Repository, supervisor: Supervisor, ready: Ready, endpoints: dict[str, str]
) -> Table:
    """Every model's variants: which runner serves each, where, how the gateway reaches it,
    and whether it is ready."""
    table = Table("model", "variant", "runner", "endpoint", "hop", "pid", "start", "state")
    table.columns[3].no_wrap = True
    for name, model in repo.items():
        for vname, v in model.variants.items():
            proc = supervisor.runners.get(v.runner)
            up = await ready(name, vname)
            used = v.endpoint or endpoints.get(v.runner, "")
            table.add_row(
                name,
                vname + (" (default)" if vname == model.routing.default else ""),
                proc.description if proc else v.runner,
                v.endpoint or (proc.endpoint if proc else "not started"),
                "framed unix socket" if socket_path(used) else "gRPC",
                str(proc.pid) if proc else "-",
                f"{proc.ready_after_s:.1f} s" if proc else "-",
                "[green]READY[/]" if up else "[red]UNAVAILABLE[/]",
            )
    return table


def example(repo: Repository, settings: Settings, http_port: int) -> str:
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


def write_ready_file(
    path: Path, front: Gateway | Fleet, supervisor: Supervisor, endpoints: dict[str, str]
) -> None:
    """What scripts and tests need to find a `servegate up` started on port 0. A runner's
    `endpoint` is its gRPC address; `gateway_endpoint` is where the gateway forwards;
    `worker_pids`, a fleet's workers (`gateway_pid` is then its primary)."""
    doc = {
        "gateway_pid": os.getpid(),
        "worker_pids": front.worker_pids if isinstance(front, Fleet) else [],
        "http_port": front.http_port,
        "grpc_port": front.grpc_port,
        "runners": {
            k: {
                "endpoint": r.endpoint,
                "socket": str(r.socket_path) if r.socket_path else None,
                "gateway_endpoint": endpoints.get(k, r.endpoint),
                "pid": r.pid,
                "ready_after_s": r.ready_after_s,
                "description": r.description,
                "key_file": str(r.key_file) if r.key_file else None,
            }
            for k, r in supervisor.runners.items()
        },
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
