"""`python -m runners.healthcheck --port P [--http PATH]`: a container healthcheck probe.

Exits 0 when the server on 127.0.0.1:PORT says it serves, 1 otherwise (Docker's and
Kubernetes' exec-probe contract). Default: grpc.health.v1 Check, which every servegate
runner (and the gateway's gRPC front end) answers SERVING once its models are loaded and
NOT_SERVING while it drains. `--http PATH` asks an HTTP route instead (the gateway's
/v2/health/ready); over TLS when SERVEGATE_TLS_CERTFILE is set, as the gateway then
serves, without verifying the certificate: the probe checks the process beside it on
loopback, not who it is. Imports only grpc (and the standard library), so a probe
costs tens of milliseconds, never a framework import.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HOST = "127.0.0.1"


def grpc_serving(port: int, service: str, timeout: float) -> bool:
    """grpc.health.v1 Check(service) answered SERVING."""
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(port: int, path: str, timeout: float, tls: bool) -> bool:
    """GET PATH answered 200."""
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{'https' if tls else 'http'}://{HOST}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.healthcheck", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="", help="grpc.health.v1 service name.")
    parser.add_argument("--http", metavar="PATH", help="Probe this HTTP route instead.")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.http:
        tls = bool(os.environ.get("SERVEGATE_TLS_CERTFILE"))
        ok = http_ok(args.port, args.http, args.timeout, tls)
    else:
        ok = grpc_serving(args.port, args.service, args.timeout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
