"""Load tests: a server that refuses every inference at once, the open-loop generator's baseline.

    python -m loadtests.refuser --protocol grpc --port-file /tmp/refuser.port

Answers every v2 ModelInfer with RESOURCE_EXHAUSTED (gRPC) or every POST with 429 (HTTP)
before reading anything else: the cheapest answer a server with perfect admission
control can give. Driving it at a rate shows what the generator alone can offer on
this machine: where it already falls behind here (start lag, unanswered, not sent), a
gateway's figures at that rate measure the generator, not the gateway. The refuser is
itself a Python grpc.aio (or aiohttp) server: far cheaper per request than a gateway,
but on a machine starved of CPU it can fall behind too, so a bad baseline says "this
machine cannot offer that rate", not which of the two gave out.
`running(protocol, workdir)` starts it as a child process on 127.0.0.1:0 and yields
its address once it has written its port file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from aiohttp import web

MESSAGE = "refused at once (loadtests.refuser: the generator's baseline)"


def _publish(port_file: Path, port: int) -> None:
    """Written once serving, atomically: the file appearing is the readiness signal."""
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)


class _Refuse(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE)
            raise AssertionError("abort returns only by raising")

        return grpc.unary_unary_rpc_method_handler(refuse)


async def _serve_grpc(port_file: Path) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Refuse(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _publish(port_file, port)
    await server.wait_for_termination()


async def _serve_http(port_file: Path) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": MESSAGE}, status=429, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_post("/{tail:.*}", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    _publish(port_file, runner.addresses[0][1])
    await asyncio.Event().wait()


@contextlib.contextmanager
def running(protocol: str, workdir: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """A refuser child process; yields "127.0.0.1:PORT" (gRPC) or "http://127.0.0.1:PORT"."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / f"refuser-{protocol}.port"
    port_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "loadtests.refuser", "--protocol", protocol]
    proc = subprocess.Popen([*argv, "--port-file", str(port_file)], stdin=subprocess.DEVNULL)
    try:
        until = time.monotonic() + timeout_s
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"the refuser did not start (exit code {proc.poll()})")
            time.sleep(0.02)
        port = port_file.read_text()
        yield f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.refuser")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--port-file", type=Path, required=True)
    args = p.parse_args()
    serve = _serve_grpc if args.protocol == "grpc" else _serve_http
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port_file))


if __name__ == "__main__":
    main()
