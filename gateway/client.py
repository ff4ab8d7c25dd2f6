"""Client: a small v2 client over HTTP (JSON or binary) and gRPC, for the CLI and load tests.

It uses the gateway's own codecs (protocol/), so what it sends is what tritonclient
sends: binary tensors when asked, raw contents on gRPC.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from pathlib import Path

import grpc
import httpx
import numpy as np

from gateway.protocol import v2_grpc, v2_http_client
from gateway.protocol.v2_service import V2Stub
from gateway.router.selection import PIN_HEADER
from gateway.tensors import InferRequest, InferResponse, Tensor

PROTOCOLS = ("http", "binary", "grpc")


class ClientError(RuntimeError):
    """The server answered an error; `status` is the HTTP status or gRPC code name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def http_client(
    base_url: str, timeout: float = 30.0, *, api_key: str | None = None, ca: Path | None = None
) -> httpx.Client:
    """An httpx client with TCP_NODELAY: h11 writes headers and body separately, and
    without it Nagle's algorithm meets the server's delayed ACK (40 ms a request).
    `api_key` goes in `Authorization: Bearer`; `ca` verifies an https gateway."""
    transport = httpx.HTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        verify=ssl.create_default_context(cafile=ca) if ca is not None else True,
    )
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return httpx.Client(base_url=base_url, timeout=timeout, transport=transport, headers=headers)


def grpc_channel(address: str, *, ca: Path | None = None) -> grpc.Channel:
    """A channel to the gateway's gRPC port: TLS verified against `ca` when given."""
    if ca is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca.read_bytes()))


def make_request(
    model: str, inputs: Mapping[str, np.ndarray], request_id: str = ""
) -> InferRequest:
    return InferRequest(
        model_name=model,
        id=request_id,
        inputs=tuple(Tensor.from_numpy(name, arr) for name, arr in inputs.items()),
    )


def infer_http(
    client: httpx.Client,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    binary: bool,
    variant: str | None = None,
) -> InferResponse:
    body, length = v2_http_client.encode_request(make_request(model, inputs), binary=binary)
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if length is not None:
        headers["Inference-Header-Content-Length"] = str(length)
    if variant:
        headers[PIN_HEADER] = variant
    reply = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    if reply.status_code != 200:
        raise ClientError(str(reply.status_code), reply.json().get("error", reply.text))
    header = reply.headers.get("inference-header-content-length")
    return v2_http_client.decode_response(reply.content, int(header) if header else None)


def infer_grpc(
    channel: grpc.Channel,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    variant: str | None = None,
    timeout: float = 30.0,
    api_key: str | None = None,
) -> InferResponse:
    stub = V2Stub(channel)  # type: ignore[arg-type]
    metadata = []
    if variant:
        metadata.append((PIN_HEADER, variant))
    if api_key:
        metadata.append(("authorization", f"Bearer {api_key}"))
    try:
        reply = stub.ModelInfer(
            v2_grpc.request_to_pb(make_request(model, inputs)),
            timeout=timeout,
            metadata=tuple(metadata) or None,
        )
    except grpc.RpcError as exc:
        raise ClientError(exc.code().name, exc.details()) from None  # type: ignore[attr-defined]
    return v2_grpc.response_from_pb(reply)
