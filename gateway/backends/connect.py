"""Backends: picks the client class for a variant from its runner's wire protocol."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gateway.backends.base import Backend, Clock
from gateway.backends.replicas import DNS_SCHEME, ReplicaSet
from gateway.backends.tfserving import TFServingBackend
from gateway.backends.torchserve import TorchServeBackend
from gateway.backends.v2 import V2Backend
from gateway.config import VariantConfig

# protocol -> constructor(name, endpoint, remote_model, max_message_bytes=, clock=)
BACKENDS: dict[str, Callable[..., Backend]] = {
    "v2": V2Backend,
    "tfserving": TFServingBackend,
    "torchserve": TorchServeBackend,
}


def connect(
    name: str,
    variant: VariantConfig,
    endpoint: str,
    remote_model: str,
    *,
    max_message_bytes: int,
    clock: Clock = time.monotonic,
    key_file: Path | None = None,
) -> Backend:
    """A client for `variant` served at `endpoint` under the runner-side name `remote_model`.

    Several endpoints (comma-separated) or a `dns:///` name make a ReplicaSet balancing
    over one client per replica. `key_file`: TorchServe's token-authorization key file.
    """
    try:
        cls = BACKENDS[variant.protocol]
    except KeyError:
        raise ValueError(f"no backend client for protocol {variant.protocol!r}") from None
    extra = {"key_file": key_file} if variant.protocol == "torchserve" else {}

    def one(address: str) -> Backend:
        return cls(
            name, address, remote_model, max_message_bytes=max_message_bytes, clock=clock, **extra
        )

    endpoints = [e.strip() for e in endpoint.split(",") if e.strip()]
    if len(endpoints) == 1 and not endpoints[0].startswith(DNS_SCHEME):
        return one(endpoints[0])
    return ReplicaSet(name, endpoints, one, clock=clock)
