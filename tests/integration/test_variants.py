"""Variant selection: every variant reachable by each pin method; the default otherwise."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import orjson
import pytest

from gateway.config import Repository
from gateway.protocol import v2_grpc
from gateway.protocol.v2_service import V2Stub
from gateway.tensors import InferRequest, Tensor
from tests.live import RunningGateway

pytestmark = pytest.mark.integration

X = np.zeros((1, 64), np.float32)
PINS = ("alias", "header", "parameter")


def _body(params: dict[str, object]) -> bytes:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]}
    return orjson.dumps(doc | ({"parameters": params} if params else {}))


def _http(gw: RunningGateway, variant: str | None, pin: str) -> httpx.Response:
    model = f"digits@{variant}" if variant and pin == "alias" else "digits"
    headers = {"servegate-variant": variant} if variant and pin == "header" else {}
    params = {"variant": variant} if variant and pin == "parameter" else {}
    return httpx.post(
        f"{gw.http_url}/v2/models/{model}/infer", content=_body(params), headers=headers
    )


def _grpc(gw: RunningGateway, variant: str | None, pin: str) -> str:
    model = f"digits@{variant}" if variant and pin == "alias" else "digits"
    params = {"variant": variant} if variant and pin == "parameter" else {}
    req = InferRequest(model, (Tensor("pixels", "FP32", X),), parameters=params)
    metadata = (("servegate-variant", variant),) if variant and pin == "header" else None
    with grpc.insecure_channel(gw.grpc_address) as channel:
        reply = V2Stub(channel).ModelInfer(  # type: ignore[arg-type]
            v2_grpc.request_to_pb(req), metadata=metadata, timeout=30
        )
    return v2_grpc.response_from_pb(reply).parameters["variant"]  # type: ignore[return-value]


def test_every_variant_by_every_pin(full_gateway: RunningGateway, repository: Repository) -> None:
    for variant in repository["digits"].variants:
        for pin in PINS:
            reply = _http(full_gateway, variant, pin)
            assert reply.status_code == 200, (variant, pin, reply.text)
            assert reply.json()["parameters"]["variant"] == variant
            assert _grpc(full_gateway, variant, pin) == variant


def test_the_default_applies_without_a_pin(
    full_gateway: RunningGateway, repository: Repository
) -> None:
    default = repository["digits"].routing.default
    assert _http(full_gateway, None, "alias").json()["parameters"]["variant"] == default
    assert _grpc(full_gateway, None, "alias") == default


def test_conflicting_pins_are_refused(full_gateway: RunningGateway) -> None:
    reply = httpx.post(
        f"{full_gateway.http_url}/v2/models/digits@onnx/infer",
        content=_body({"variant": "jax"}),
    )
    assert reply.status_code == 400
    assert "conflicting variant pins" in reply.json()["error"]


def test_metadata_lists_every_variant_ready(
    full_gateway: RunningGateway, repository: Repository
) -> None:
    meta = httpx.get(f"{full_gateway.http_url}/v2/models/digits").json()
    states = {v["name"]: v["state"] for v in meta["variants"]}
    assert states == dict.fromkeys(repository["digits"].variants, "READY")
    platforms = {v["name"]: v["platform"] for v in meta["variants"]}
    assert platforms["onnx"] == "onnx_onnxv1"
    pinned = httpx.get(f"{full_gateway.http_url}/v2/models/digits@jax").json()
    assert pinned["platform"] == "jax_export"
    assert pinned["parameters"]["variant"] == "jax"
