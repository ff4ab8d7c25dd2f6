"""Load tests: `servegate bench hotpath` -- the gateway's own CPU per request, no sockets.

The peer comparison (loadtests/peers.py) measures a whole system; this measures the one
part that is ours alone: a request's way through a front end's handler, the dataplane,
the router and the batcher, to a backend that answers at once (tests/doubles.py's kind,
in-process). Every request is real: encoded as a client would, decoded, validated,
routed, batched, answered, encoded. It reports CPU microseconds per request for each
front end, steady enough on a shared machine to compare two commits (run both, twice).

    python -m loadtests.bench hotpath [--requests 20000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from gateway.api import grpc as grpc_api
from gateway.api.http import create_app
from gateway.config import DEFAULT_REPOSITORY, ModelConfig, Repository, load_repository
from gateway.dataplane import DataPlane
from gateway.protocol import v2_grpc
from gateway.tensors import InferRequest, InferResponse, Tensor

console = Console()
Call = Callable[[], Awaitable[None]]


class InstantBackend:
    """A v2 backend that answers every request at once with zeros of the signature's
    output shape (the runner's cost is not what this measures)."""

    protocol = "v2"

    def __init__(self, model: ModelConfig) -> None:
        self.name = f"{model.name}@instant"
        self._outputs = model.signature.outputs

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        rows = request.inputs[0].shape[0]
        outputs = tuple(
            Tensor(s.name, s.datatype, np.zeros((rows, *s.shape[1:]), dtype=np.float32))
            for s in self._outputs
        )
        return InferResponse(request.model_name, outputs)

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class _Context:
    """The few grpc.aio ServicerContext calls ModelInfer makes."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float:
        return 10.0


def _row(model: ModelConfig) -> np.ndarray:
    spec = model.signature.inputs[0]
    shape = [1 if d == -1 else d for d in spec.shape]
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def grpc_call(plane: DataPlane, model: ModelConfig) -> Call:
    """One ModelInfer through the gRPC servicer's handler, from the wire bytes up."""
    spec = model.signature.inputs[0]
    tensor = Tensor(spec.name, spec.datatype, _row(model))
    data = v2_grpc.request_to_pb(InferRequest(model.name, (tensor,))).SerializeToString()
    handler = grpc_api.servicer(plane).service(_Details("ModelInfer"))
    assert handler is not None
    infer = handler.unary_unary
    serialize = handler.response_serializer
    ctx = _Context()

    async def call() -> None:
        serialize(await infer(data, ctx))

    return call


class _Details:
    def __init__(self, method: str) -> None:
        self.method = f"/inference.GRPCInferenceService/{method}"


def http_call(plane: DataPlane, model: ModelConfig) -> Call:
    """One JSON infer through the HTTP app, from the ASGI scope up."""
    spec = model.signature.inputs[0]
    row = _row(model)
    body = orjson.dumps(
        {"inputs": [{"name": spec.name, "datatype": spec.datatype, "shape": list(row.shape),
                     "data": row.reshape(-1).tolist()}]}
    )  # fmt: skip
    app = create_app(plane, max_body_bytes=1 << 26)
    path = f"/v2/models/{model.name}/infer"
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def call() -> None:
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "headers": headers, "http_version": "1.1",
                 "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1),
                 "root_path": ""}  # fmt: skip
        await app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"infer answered {status}")

    return call


async def measure(call: Call, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per request, requests per CPU second) for `requests` calls at `concurrency`."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    for _ in range(200):  # warm: lazy imports, caches, the first batch lanes
        await call()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu0
    return cpu / requests * 1e6, requests / cpu


def plane_for(repository: Path, model_name: str) -> tuple[DataPlane, ModelConfig]:
    """A DataPlane over the repository's `model_name`, each variant answered instantly."""
    repo = load_repository(repository)
    model = repo[model_name]
    only = Repository(repo.root, {model_name: model})
    backends = {(model_name, v): InstantBackend(model) for v in model.variants}
    return DataPlane(only, backends), model  # type: ignore[arg-type]


async def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    rows = []
    for front, make in (("gRPC", grpc_call), ("HTTP JSON", http_call)):
        for _ in range(args.repeat):
            plane, model = plane_for(args.repository, args.model)
            plane.start()
            try:
                us, rate = await measure(make(plane, model), args.requests, args.concurrency)
            finally:
                await plane.aclose()
            rows.append((front, us, rate))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="servegate bench hotpath", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", default="digits")
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=2, help="Runs per front end.")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = p.parse_args(argv)
    try:
        import uvloop

        rows = uvloop.run(run(args))
    except ImportError:
        rows = asyncio.run(run(args))
    title = f"{args.model}, c={args.concurrency}, in-process, instant backend"
    table = Table("front end", "CPU µs / request", "requests / CPU s", title=title)
    for front, us, rate in rows:
        table.add_row(front, f"{us:.0f}", f"{rate:.0f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
