"""tritonclient, a client we did not write, against the gateway: HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from gateway.config import Repository
from tests.live import RunningGateway, samples

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def sample(repository: Repository) -> tuple[np.ndarray, np.ndarray]:
    ref = samples(repository, "digits")
    return ref["inputs"][:5], ref["logits"][:5]


@pytest.fixture(params=["http", "grpc"])
def triton(
    request: pytest.FixtureRequest, onnx_gateway: RunningGateway
) -> Iterator[tuple[Any, Any]]:
    if request.param == "http":
        c = thttp.InferenceServerClient(onnx_gateway.http_url.removeprefix("http://"))
        yield c, thttp
    else:
        c = tgrpc.InferenceServerClient(onnx_gateway.grpc_address)
        yield c, tgrpc
    c.close()


def _meta(obj: Any) -> dict[str, Any]:
    """tritonclient HTTP returns dicts, gRPC protobufs (as_json gives dicts there)."""
    if isinstance(obj, dict):
        return obj
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(obj, preserving_proto_field_name=True)


def test_health(triton: tuple[Any, Any]) -> None:
    c, _ = triton
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("digits")
    assert c.is_model_ready("digits", "1")
    assert c.is_model_ready("digits@onnx")


def test_server_metadata(triton: tuple[Any, Any]) -> None:
    c, _ = triton
    meta = _meta(c.get_server_metadata())
    assert meta["name"] == "servegate"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata(triton: tuple[Any, Any]) -> None:
    c, _ = triton
    meta = _meta(c.get_model_metadata("digits"))
    assert meta["name"] == "digits"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnx_onnxv1"
    (inp,) = meta["inputs"]
    assert (inp["name"], inp["datatype"], [int(d) for d in inp["shape"]]) == (
        "pixels",
        "FP32",
        [-1, 64],
    )
    (out,) = meta["outputs"]
    assert (out["name"], [int(d) for d in out["shape"]]) == ("logits", [-1, 10])


@pytest.mark.parametrize("binary", [True, False])
def test_infer(
    triton: tuple[Any, Any], sample: tuple[np.ndarray, np.ndarray], binary: bool
) -> None:
    c, mod = triton
    x, logits = sample
    inp = mod.InferInput("pixels", list(x.shape), "FP32")
    if mod is thttp:
        inp.set_data_from_numpy(x, binary_data=binary)
        out = mod.InferRequestedOutput("logits", binary_data=binary)
    else:
        inp.set_data_from_numpy(x)
        out = mod.InferRequestedOutput("logits")
    result = c.infer("digits", [inp], outputs=[out], request_id="req-7", model_version="1")
    got = result.as_numpy("logits")
    assert got.shape == (5, 10)
    np.testing.assert_allclose(got, logits, atol=1e-4)
    assert result.get_response(**({"as_json": True} if mod is tgrpc else {}))["id"] == "req-7"


def test_infer_without_requested_outputs(
    triton: tuple[Any, Any], sample: tuple[np.ndarray, np.ndarray]
) -> None:
    """tritonclient HTTP then asks for binary_data_output on the request: it must be honoured."""
    c, mod = triton
    x, logits = sample
    inp = mod.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    got = c.infer("digits", [inp]).as_numpy("logits")
    np.testing.assert_allclose(got, logits, atol=1e-4)


def test_errors_surface_as_exceptions(
    triton: tuple[Any, Any], sample: tuple[np.ndarray, np.ndarray]
) -> None:
    c, mod = triton
    x, _ = sample
    inp = mod.InferInput("pixels", [5, 63], "FP32")
    inp.set_data_from_numpy(x[:, :63].copy())
    with pytest.raises(Exception, match="does not match the model's"):
        c.infer("digits", [inp])
    with pytest.raises(Exception, match="unknown model 'nope'"):
        c.get_model_metadata("nope")
