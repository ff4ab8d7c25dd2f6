"""Load tests: cold start: each runner started alone, timed to ready, then its first request.

Inside `servegate up` every runner starts at once and they slow each other down, so the
bench measures model load time per runner kind in isolation (the supervisor's own
spawn-to-ready time: port file and health check, or TorchServe's worker READY), then
times the first request straight to the runner for each model it serves (a lazy
compile or a cold JVM shows there). Runs before the matrix, on the same machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc

from gateway.config import Repository
from gateway.supervisor import RunnerFailed, Supervisor
from loadtests import wire, workload

FIRST_REQUEST_TIMEOUT_S = 120.0


def first_request_ms(repository: Repository, endpoint: str, model: str, variant: str) -> float:
    """One request of batch 1 straight to the runner, checked; raises on a wrong answer."""
    config = repository[model].variants[variant]
    load = workload.build(model, 1, repository=repository)
    channel_wire = wire.GRPC_WIRES[config.protocol]
    body = channel_wire.encode(model, load.input_name, load.batches[0])
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(channel_wire.path)
        t0 = time.perf_counter()
        reply = call(body, timeout=FIRST_REQUEST_TIMEOUT_S)
        elapsed = (time.perf_counter() - t0) * 1000.0
    problem = load.check(0, channel_wire.decode(reply))
    if problem is not None:
        raise ValueError(f"{model}@{variant}: {problem}")
    return elapsed


def measure(
    repository: Repository, pairs: Iterable[tuple[str, str]], workdir: Path
) -> dict[str, dict[str, Any]]:
    """runner kind -> {description, ready_after_s, first_request_ms: {model@variant: ms}}
    (or `error`), one kind at a time, for the (model, variant) pairs given."""
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for model, variant in pairs:
        by_kind.setdefault(repository[model].variants[variant].runner, []).append((model, variant))
    out: dict[str, dict[str, Any]] = {}
    for kind, members in by_kind.items():
        supervisor = Supervisor(repository, workdir / kind)
        row: dict[str, Any] = {"first_request_ms": {}}
        try:
            endpoint = asyncio.run(supervisor.start([kind]))[kind]
            runner = supervisor.runners[kind]
            row["description"] = getattr(runner, "description", "")
            row["ready_after_s"] = runner.ready_after_s
            for model, variant in members:
                row["first_request_ms"][f"{model}@{variant}"] = first_request_ms(
                    repository, endpoint, model, variant
                )
        except (RunnerFailed, grpc.RpcError, ValueError, OSError) as exc:
            row["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            supervisor.stop()
        out[kind] = row
    return out


def through_gateway(
    repository: Repository, grpc_address: str, pairs: Iterable[tuple[str, str]]
) -> dict[str, float | None]:
    """model@variant -> the first request through the gateway (ms), None if it failed: a
    variant's lazy load or compile shows here, once the whole system is up."""
    out: dict[str, float | None] = {}
    v2 = wire.GRPC_WIRES["v2"]
    with grpc.insecure_channel(grpc_address) as channel:
        call = channel.unary_unary(v2.path)
        for model, variant in pairs:
            name = f"{model}@{variant}"
            load = workload.build(model, 1, repository=repository)
            body = v2.encode(name, load.input_name, load.batches[0])
            t0 = time.perf_counter()
            try:
                reply = call(body, timeout=FIRST_REQUEST_TIMEOUT_S)
            except grpc.RpcError:
                out[name] = None
                continue
            elapsed = (time.perf_counter() - t0) * 1000.0
            out[name] = elapsed if load.check(0, v2.decode(reply)) is None else None
    return out
