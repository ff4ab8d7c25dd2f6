"""Sequential latency probe: p50/p90 of one request at a time, gateway versus runner direct.

`python -m loadtests.sequential --model digits --variant onnx -n 500` starts
`servegate up` with that variant's runner (a gateway process of its own, as users run
it), interleaves the targets round-robin so machine noise hits them alike, and prints a
table. Straight-to-runner figures need a v2 runner (onnx, jax); `servegate bench` covers
the others.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from gateway import client
from gateway.config import DEFAULT_REPOSITORY, Repository, load_repository
from loadtests.system import LocalSystem

console = Console()


def _sample(repo: Repository, model: str, batch: int) -> dict[str, np.ndarray]:
    spec = repo[model].signature.inputs[0]
    with np.load(repo.version_folder(model) / "samples.npz") as f:
        x = f["inputs"][:batch]
    return {spec.name: np.ascontiguousarray(x)}


def measure(calls: dict[str, Callable[[], object]], n: int, warmup: int) -> dict[str, list[float]]:
    """Round-robin over the targets, `n` timed calls each after `warmup` untimed ones."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def report(times: dict[str, list[float]], baseline: str) -> Table:
    table = Table("target", "p50 ms", "p90 ms", "p99 ms", f"p50 / {baseline}")
    base = statistics.median(times[baseline])
    for name, ts in times.items():
        q = np.percentile(ts, [50, 90, 99])
        table.add_row(name, f"{q[0]:.3f}", f"{q[1]:.3f}", f"{q[2]:.3f}", f"{q[0] / base:.2f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.sequential")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--variant", default="onnx")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args()

    repo = load_repository(args.repository)
    variant = repo[args.model].variants[args.variant]
    workdir = Path(tempfile.mkdtemp(prefix="servegate-seq-"))
    inputs = _sample(repo, args.model, args.batch)
    model = f"{args.model}@{args.variant}"
    with LocalSystem(args.repository, workdir, [variant.runner], build=False) as system:
        runner = system.runners[variant.runner]
        console.print(
            f"{runner.description}: spawn -> ready {runner.ready_after_s or 0:.2f} s "
            f"(every model it serves loaded and warm)"
        )
        http = client.http_client(system.http_url)
        gw_channel = grpc.insecure_channel(system.grpc_address)
        calls: dict[str, Callable[[], object]] = {
            "gateway gRPC": lambda: client.infer_grpc(gw_channel, model, inputs),
            "gateway HTTP binary": lambda: client.infer_http(http, model, inputs, binary=True),
            "gateway HTTP JSON": lambda: client.infer_http(http, model, inputs, binary=False),
        }
        endpoint = system.direct_endpoint(repo, args.model, args.variant)
        if variant.protocol == "v2" and endpoint:
            direct = grpc.insecure_channel(endpoint)
            calls["runner direct gRPC"] = lambda: client.infer_grpc(direct, args.model, inputs)
        times = measure(calls, args.n, args.warmup)
    baseline = "runner direct gRPC" if "runner direct gRPC" in times else "gateway gRPC"
    console.print(f"{model}, batch {args.batch}, {args.n} sequential requests per target")
    console.print(report(times, baseline))


if __name__ == "__main__":
    main()
