"""HTTP codecs: JSON and binary-extension round trips; any malformed body -> BadRequest."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.protocol import v2_http, v2_http_client
from gateway.tensors import DATATYPES, InferRequest, InferResponse, RequestedOutput, Tensor
from tests.strategies import (
    EXTREME_NUMBERS,
    JSON_EXACT,
    Deep,
    assert_same,
    binary_bodies,
    json_body,
    mutated,
    request_docs,
    requests_of,
    small_shapes,
    tensors,
)


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
    with pytest.raises(BadRequest, match="UINT8 data must be JSON integers in the UINT8 range"):
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
        (_doc(data=["a", "b"]), None, "FP32 data must be JSON numbers"),
        (_doc(data=[1.0, True]), None, "FP32 data must be JSON numbers"),
        (_doc(data=[1.0, None]), None, "FP32 data must be JSON numbers"),
        (_doc(data=[[1], [2, 3]]), None, "nests deeper than the shape's 1 dims"),
        (_doc(shape=[2, 1], data=[[1], [2, 3]]), None, "lists of equal lengths"),
        (_doc(data=None), None, "data must be a list"),
        (orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}), None,
         "needs 'data'"),
        (_doc(data=None, parameters={"binary_data_size": 8}), None, "runs past the end"),
        (_doc(parameters={"x": [1]}), None, "parameter 'x' must be a string, number or bool"),
        (_doc(parameters=[1]), None, "parameters must be an object"),
        (orjson.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}),
         None, "BYTES data must be JSON strings"),
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


# ---- any JSON in any field: an InferRequest or BadRequest, never another error ----


def _decoded_or_refused(body: bytes, length: int | None) -> InferRequest | None:
    """decode_request's answer, None for a BadRequest; any other error fails the test."""
    try:
        req = v2_http.decode_request(body, length, model_name="m")
    except BadRequest as exc:
        assert "Traceback" not in exc.message and "object at 0x" not in exc.message
        return None
    for t in req.inputs:  # what came through is well formed
        assert t.data.dtype == DATATYPES[t.datatype].dtype
        assert all(isinstance(v, str | bool | int | float) for v in t.parameters.values())
    return req


@settings(max_examples=1000, deadline=None)
@given(mutated(request_docs()), st.booleans())
def test_any_json_in_any_field_is_a_request_or_a_bad_request(doc: Any, ascii_only: bool) -> None:
    _decoded_or_refused(json_body(doc, ascii_only=ascii_only), None)


@settings(max_examples=500, deadline=None)
@given(binary_bodies(requests_of(st.lists(tensors(shapes=small_shapes), min_size=1, max_size=3))))
def test_any_binary_body_is_a_request_or_a_bad_request(case: tuple[bytes, int | None]) -> None:
    _decoded_or_refused(*case)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(-2, 80) | st.none())
def test_any_bytes_are_a_request_or_a_bad_request(body: bytes, length: int | None) -> None:
    _decoded_or_refused(body, length)


def _field(where: str, value: object) -> bytes:
    """A valid one-input request with `value` placed at `where`."""
    inp: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    doc: dict[str, Any] = {"inputs": [inp]}
    if where in ("id", "parameters", "outputs"):
        doc[where] = value
    elif where.startswith("parameters."):
        doc["parameters"] = {where.split(".", 1)[1]: value}
    elif where.startswith("input.parameters."):
        inp["parameters"] = {where.split(".", 2)[2]: value}
    elif where.startswith("output.parameters."):
        doc["outputs"] = [{"name": "y", "parameters": {where.split(".", 2)[2]: value}}]
    elif where == "shape[0]":
        inp["shape"] = [value]
    else:
        inp[where] = value
    return json_body(doc)


FIELDS = ["name", "datatype", "shape", "shape[0]", "data", "parameters", "id", "outputs",
          "parameters.timeout", "parameters.binary_data_output",
          "input.parameters.binary_data_size", "output.parameters.binary_data"]  # fmt: skip
ODD_VALUES = [[], {}, ["FP32"], {"a": 1}, None, True, "ünïcødé ✓", *EXTREME_NUMBERS,
              Deep(1000), Deep(1000, "{}"), Deep(1000, '"s"'), Deep(1100)]  # fmt: skip


@pytest.mark.parametrize("where", FIELDS)
def test_odd_values_in_every_field(where: str) -> None:
    for value in ODD_VALUES:
        _decoded_or_refused(_field(where, value), None)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("datatype", ["FP32"], "unknown datatype (a JSON array)"),
        ("datatype", {"a": 1}, "unknown datatype (a JSON object)"),
        ("datatype", "FP32" * 20, "unknown datatype 'FP32FP32FP32FP32FP32FP32FP32FP32FP32..."),
        ("name", {"a": 1}, "string 'name'"),
        ("id", ["a"], "'id' must be a string"),
        ("shape[0]", 1e308, "non-negative integers"),
        ("shape[0]", 2**64 - 1, "too large for any tensor"),
        ("shape[0]", True, "non-negative integers"),
        ("shape", [2**40, 2**40], "too large for any tensor"),
        ("shape", [0, 2**62], "too large for any tensor"),
        ("shape", [1] * 33, "more than 32"),
        ("parameters.timeout", [1], "parameter 'timeout' must be a string, number or bool"),
        ("parameters.binary_data_output", "yes", "'binary_data_output' must be a boolean"),
        ("output.parameters.binary_data", 1, "'binary_data' must be a boolean"),
        ("input.parameters.binary_data_size", 1e308, "binary_data_size must be a non-negative"),
        ("input.parameters.binary_data_size", 2**64 - 1, "runs past the end of the body"),
        ("input.parameters.binary_data_size", -1, "binary_data_size must be a non-negative"),
        ("data", Deep(1000), "nests deeper than the shape's 1 dims"),
        ("data", Deep(1100), "malformed JSON"),  # past orjson's depth limit
        ("id", Deep(1000), "'id' must be a string"),
        ("parameters.timeout", Deep(1000), "parameter 'timeout' must be a string, number"),
        ("data", [1.0, "2.0"], "FP32 data must be JSON numbers"),
    ],
)
def test_odd_values_get_messages_naming_what_is_wrong(
    where: str, value: object, message: str
) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        v2_http.decode_request(_field(where, value), None, model_name="m")


def test_parameters_hold_any_unicode_and_64_bit_ints() -> None:
    doc = {"inputs": [{"name": "ключ ✓", "datatype": "BYTES", "shape": [1], "data": ["😀"]}],
           "id": "🆔", "parameters": {"ü": "ß", "big": 2**64 - 1, "small": -(2**63)}}  # fmt: skip
    req = v2_http.decode_request(json_body(doc, ascii_only=False), None, model_name="m")
    assert req.inputs[0].name == "ключ ✓"
    assert req.inputs[0].data.tolist() == ["😀".encode()]
    assert req.parameters == {"ü": "ß", "big": 2**64 - 1, "small": -(2**63)}
    assert req.id == "🆔"


@pytest.mark.parametrize("hidden", [True, False])
@pytest.mark.parametrize("datatype", ["FP32", "INT32", "UINT8"])
def test_a_boolean_among_numbers_is_refused_however_the_body_looks(
    hidden: bool, datatype: str
) -> None:
    """Booleans are looked for only where the text holds `true`/`false`: every body that
    holds one is still checked, wherever else those words appear."""
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": [1, 3], "data": [0, hidden, 1]}],
         "parameters": {"binary_data_output": False}}
    )  # fmt: skip
    with pytest.raises(BadRequest, match="data must be JSON"):
        v2_http.decode_request(body, None, model_name="m")


def test_numbers_without_any_boolean_in_the_text_decode_as_numbers() -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3],
                     "data": [0, 1, 0, 1.0, 0.0, 16]}]}
    )  # fmt: skip
    assert b"true" not in body and b"false" not in body
    req = v2_http.decode_request(body, None, model_name="m")
    np.testing.assert_array_equal(req.inputs[0].data, [[0, 1, 0], [1, 0, 16]])
    assert req.inputs[0].data.dtype == np.float32
