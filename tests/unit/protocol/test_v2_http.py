"""HTTP codecs: JSON and binary-extension round trips, and malformed bodies -> BadRequest."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.protocol import v2_http, v2_http_client
from gateway.tensors import InferRequest, InferResponse, RequestedOutput, Tensor
from tests.strategies import JSON_EXACT, assert_same, tensors


def _unique(ts: list[Tensor]) -> tuple[Tensor, ...]:
    return tuple(Tensor(f"{t.name}{i}", t.datatype, t.data) for i, t in enumerate(ts))


@given(st.lists(tensors(), min_size=1, max_size=3), st.booleans())
def test_request_round_trip_binary(ts: list[Tensor], _: bool) -> None:
    req = InferRequest(model_name="m", inputs=_unique(ts), id="r1")
    body, length = v2_http_client.encode_request(req, binary=True)
    back = v2_http.decode_request(body, length, model_name="m")
    assert back.id == "r1"
    for a, b in zip(req.inputs, back.inputs, strict=True):
        assert_same(a, b)
    assert back.parameters == {"binary_data_output": True}


@given(st.lists(tensors(JSON_EXACT), min_size=1, max_size=3))
def test_request_round_trip_json(ts: list[Tensor]) -> None:
    req = InferRequest(model_name="m", inputs=_unique(ts))
    body, length = v2_http_client.encode_request(req, binary=False)
    assert length is None
    back = v2_http.decode_request(body, None, model_name="m")
    for a, b in zip(req.inputs, back.inputs, strict=True):
        if a.datatype == "BYTES":
            a = Tensor(a.name, a.datatype, a.data)  # JSON BYTES are text: compare decoded
            assert [v.decode("utf-8", "replace") for v in a.data.reshape(-1)] == [
                v.decode() for v in b.data.reshape(-1)
            ]
        else:
            assert_same(a, b)


@given(st.lists(tensors(), min_size=1, max_size=3), st.data())
def test_response_binary_outputs_round_trip(ts: list[Tensor], data: st.DataObject) -> None:
    outs = _unique(ts)
    flags = {t.name: data.draw(st.booleans()) for t in outs}
    resp = InferResponse(model_name="m", model_version="1", outputs=outs)
    body, length = v2_http.encode_response(resp, v2_http.BinaryOutputs(flags=flags))
    back = v2_http_client.decode_response(body, length)
    assert back.model_version == "1"
    for a, b in zip(outs, back.outputs, strict=True):
        if flags[a.name] or a.datatype in JSON_EXACT[:-1]:
            assert_same(a, Tensor(b.name, b.datatype, b.data))


def test_json_response_carries_numbers_and_header_only_when_binary() -> None:
    logits = Tensor("logits", "FP32", np.array([[0.5, -1.0]], np.float32))
    body, length = v2_http.encode_response(
        InferResponse("m", (logits,), id="x"), v2_http.BinaryOutputs(False)
    )
    assert length is None
    assert orjson.loads(body) == {
        "model_name": "m", "id": "x",
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 2], "data": [0.5, -1.0]}],
    }  # fmt: skip
    body, length = v2_http.encode_response(
        InferResponse("m", (logits,)), v2_http.BinaryOutputs(True)
    )
    header = orjson.loads(body[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert body[length:] == logits.data.tobytes()


def test_binary_outputs_per_output_flag_overrides_default() -> None:
    req = InferRequest(
        "m", (), outputs=(RequestedOutput("a", False), RequestedOutput("b")),
        parameters={"binary_data_output": True},
    )  # fmt: skip
    choice = v2_http.binary_outputs(req)
    assert (choice("a"), choice("b"), choice("other")) == (False, True, True)
    only_default = v2_http.binary_outputs(
        InferRequest("m", (), parameters={"binary_data_output": True})
    )
    assert only_default("anything")


def test_raw_binary_request_sizes_its_free_dim_from_the_body() -> None:
    one = np.arange(64, dtype=np.float32)
    req = v2_http.decode_raw_request(
        one.tobytes(), name="pixels", datatype="FP32", shape=(-1, 64), model_name="digits"
    )
    assert req.inputs[0].shape == (1, 64)
    assert req.parameters["binary_data_output"] is True
    three = v2_http.decode_raw_request(
        np.zeros((3, 64), np.float32).tobytes(), name="pixels", datatype="FP32",
        shape=(-1, 64), model_name="digits",
    )  # fmt: skip
    assert three.inputs[0].shape == (3, 64)
    with pytest.raises(BadRequest, match="not a whole number"):
        v2_http.decode_raw_request(
            b"\0" * 100, name="pixels", datatype="FP32", shape=(-1, 64), model_name="digits"
        )


def test_huge_bytes_shape_with_tiny_data_is_refused_before_allocating() -> None:
    header = orjson.dumps(
        {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1_000_000_000],
                     "parameters": {"binary_data_size": 8}}]}
    )  # fmt: skip
    with pytest.raises(BadRequest, match="cannot hold 1000000000 BYTES elements"):
        v2_http.decode_request(header + b"\0" * 8, len(header), model_name="m")


def test_out_of_range_integers_are_bad_requests() -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}]}
    )
    with pytest.raises(BadRequest, match="not valid UINT8"):
        v2_http.decode_request(body, None, model_name="m")


def _doc(**inp: object) -> bytes:
    base: dict[str, object] = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}
    return orjson.dumps({"inputs": [base | inp]})


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"[]", None, "must be a JSON object"),
        (b"{}", None, "non-empty 'inputs'"),
        (_doc(datatype="FP8"), None, "unknown datatype"),
        (_doc(shape=[-1]), None, "non-negative integers"),
        (_doc(shape="2"), None, "non-negative integers"),
        (_doc(data=[1, 2, 3]), None, "3 elements in data for shape [2]"),
        (_doc(data=["a", "b"]), None, "not valid FP32"),
        (_doc(data=[[1], [2, 3]]), None, "not valid FP32"),
        (_doc(data=None), None, "data must be a list"),
        (orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}), None,
         "needs 'data'"),
        (_doc(data=None, parameters={"binary_data_size": 8}), None, "runs past the end"),
        (_doc(parameters={"x": [1]}), None, "parameters must be an object"),
        (orjson.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}),
         None, "not valid BYTES"),
        (orjson.dumps({"inputs": [{"datatype": "FP32"}]}), None, "string 'name'"),
        (orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}],
                       "outputs": {"name": "y"}}), None, "'outputs' must be a list"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_bad_requests(body: bytes, length: int | None, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        v2_http.decode_request(body, length, model_name="m")


def test_binary_size_must_match_the_shape() -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 4},
                }
            ]
        }
    )
    with pytest.raises(BadRequest, match="expected 8 bytes"):
        v2_http.decode_request(header + b"\0" * 4, len(header), model_name="m")


def test_unclaimed_binary_bytes_are_rejected() -> None:
    body, length = v2_http_client.encode_request(
        InferRequest("m", (Tensor("x", "FP32", np.zeros(2, np.float32)),)), binary=True
    )
    with pytest.raises(BadRequest, match="no input claims"):
        v2_http.decode_request(body + b"extra", length, model_name="m")


def test_header_length_outside_body() -> None:
    with pytest.raises(BadRequest, match="outside the body"):
        v2_http.decode_request(b"{}", 10, model_name="m")
