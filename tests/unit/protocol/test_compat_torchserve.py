"""TorchServe-style bodies: JSON (named, bare, `data`-wrapped, one instance), raw bytes, the
gRPC input map, answers raw or JSON, TorchServe's error body; anything else BadRequest."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Signature
from gateway.errors import BadRequest, ModelNotFound, Overloaded, Unavailable
from gateway.protocol import compat_torchserve as ts
from gateway.tensors import InferResponse, Tensor
from tests.strategies import json_body, json_values, mutated

DIGITS = Signature.model_validate(
    {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
     "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}
)  # fmt: skip
TINY = Signature.model_validate(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                {"name": "tag", "datatype": "BYTES", "shape": [-1]}],
     "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]},
                 {"name": "label", "datatype": "BYTES", "shape": [-1]}]}
)  # fmt: skip
IMAGES = Signature.model_validate(
    {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
     "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}]}
)  # fmt: skip
ROW = np.arange(64, dtype=np.float32)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("doc", "rows", "instance"),
    [
        ({"data": ROW.tolist()}, 1, True),
        ({"body": [ROW.tolist()] * 3}, 3, False),
        ({"pixels": ROW.tolist()}, 1, True),
        ({"data": {"pixels": [ROW.tolist()] * 2}}, 2, False),
        (ROW.tolist(), 1, True),
        ([ROW.tolist()], 1, False),
    ],
)
def test_json_bodies_a_torchserve_user_sends(doc: Any, rows: int, instance: bool) -> None:
    decoded = ts.decode_body(body(doc), DIGITS, "application/json")
    assert decoded.json and decoded.instance == instance
    (t,) = decoded.inputs
    assert t.name == "pixels" and t.data.shape == (rows, 64)
    np.testing.assert_array_equal(t.data[0], ROW)


def test_json_is_found_without_a_content_type_and_raw_is_the_rest() -> None:
    assert ts.decode_body(body({"data": ROW.tolist()}), DIGITS, None).json
    assert ts.decode_body(body({"data": ROW.tolist()}), DIGITS, "text/plain").json
    raw = ts.decode_body(np.stack([ROW, ROW]).tobytes(), DIGITS, None)
    assert not raw.json and raw.inputs[0].data.shape == (2, 64)
    # application/octet-stream wins, even over bytes that would parse as JSON
    with pytest.raises(BadRequest, match="whole number of"):
        ts.decode_body(b"[1.0]", DIGITS, "application/octet-stream")


def test_several_named_inputs_with_bytes() -> None:
    decoded = ts.decode_body(body({"x": [1, 2, 3, 4], "tag": {"b64": "aGk="}}), TINY)
    x, tag = decoded.inputs
    assert x.data.shape == (1, 4) and tag.data.tolist() == [b"hi"] and decoded.instance


def test_a_raw_body_of_a_bytes_input_is_its_one_element() -> None:
    decoded = ts.decode_body(b"\x89PNG\x00", IMAGES, "image/png")
    assert decoded.inputs[0].data.tolist() == [b"\x89PNG\x00"] and not decoded.json


@pytest.mark.parametrize(
    ("data", "content_type", "sig", "words"),
    [
        (b"--x\r\n", "multipart/form-data; boundary=x", DIGITS, "multipart"),
        (b"{", "application/json", DIGITS, "JSON Parse error"),
        (b"", None, DIGITS, "empty"),
        (b"\0" * 255, None, DIGITS, "whole number of"),
        (b"\0" * 16, None, TINY, "single-input model"),
        (body([1, 2, 3, 4]), None, TINY, "single-input model"),
        (body({"x": [1, 2, 3, 4]}), None, TINY, "missing inputs"),
        (body({"x": [1, 2, 3, 4], "tag": "a", "z": 1}), None, TINY, "unknown input 'z'"),
        (body([[[1.0]]]), None, DIGITS, "3-dimensional value"),
        (body({"data": ["a"] * 64}), None, DIGITS, "FP32 data must be JSON numbers"),
    ],
)
def test_bad_bodies(data: bytes, content_type: str | None, sig: Signature, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        ts.decode_body(data, sig, content_type)


def test_grpc_input_map() -> None:
    whole = ts.decode_inputs({"data": body({"x": [1, 2, 3, 4], "tag": "a"})}, TINY)
    assert whole.json and whole.instance
    named = ts.decode_inputs(
        {"x": np.ones((2, 4), np.float32).tobytes(), "tag": b'["a", "b"]'}, TINY
    )
    assert named.json and not named.instance and named.inputs[0].data.shape == (2, 4)
    raw = ts.decode_inputs({"data": ROW.tobytes()}, DIGITS)
    assert not raw.json and raw.inputs[0].data.shape == (1, 64)
    with pytest.raises(BadRequest, match="unknown input 'y'"):
        ts.decode_inputs({"x": b"[]", "y": b"[]"}, TINY)
    with pytest.raises(BadRequest, match="missing inputs"):
        ts.decode_inputs({"x": b"[[1, 2, 3, 4]]"}, TINY)
    with pytest.raises(BadRequest, match="no input"):
        ts.decode_inputs({}, TINY)


def _answer(*outputs: Tensor) -> InferResponse:
    return InferResponse("m", outputs, model_version="1")


def test_answers_mirror_the_request() -> None:
    logits = np.arange(10, dtype=np.float32).reshape(1, 10)
    resp = _answer(Tensor("logits", "FP32", logits))
    raw = ts.Decoded((), json=False)
    assert ts.encode_answer(resp, raw) == (logits.tobytes(), "application/octet-stream")
    out, media = ts.encode_answer(resp, raw, want_json=True)
    assert media == "application/json" and orjson.loads(out) == [logits[0].tolist()]
    out, _ = ts.encode_answer(resp, ts.Decoded((), json=True, instance=True))
    assert orjson.loads(out) == logits[0].tolist()
    two = _answer(Tensor("y", "FP32", np.zeros((1, 4), np.float32)),
                  Tensor("label", "BYTES", np.array([b"cat"], dtype=object)))  # fmt: skip
    out, media = ts.encode_answer(two, raw)
    assert media == "application/json"
    assert orjson.loads(out) == {"y": [[0.0] * 4], "label": ["cat"]}


def test_error_body_and_health_are_torchserves() -> None:
    assert ts.error_doc(ModelNotFound("Model not found: x")) == {
        "code": 404, "type": "ModelNotFoundException", "message": "Model not found: x"
    }  # fmt: skip
    assert ts.error_doc(BadRequest("no"))["type"] == "BadRequestException"
    assert ts.error_doc(Overloaded("busy"))["code"] == 429
    assert ts.error_doc(Unavailable("down"))["type"] == "ServiceUnavailableException"
    assert ts.health(True) == '{\n  "status": "Healthy"\n}'
    assert json.loads(ts.health(False)) == {"status": "Unhealthy"}


@pytest.mark.parametrize(
    ("path", "version"),
    [("1", "1"), ("1.0", "1"), ("2.00", "2"), ("", ""), ("1.5", "1.5"), ("v1", "v1")],
)
def test_torchserve_versions(path: str, version: str) -> None:
    assert ts.model_version(path) == version


@given(
    mutated(st.builds(lambda: {"data": {"x": [[1, 2, 3, 4]], "tag": ["a"]}})) | json_values,
    st.sampled_from([None, "application/json", "application/octet-stream", "text/plain"]),
)
def test_any_json_body_gives_tensors_or_bad_request(doc: Any, content_type: str | None) -> None:
    with contextlib.suppress(BadRequest):
        ts.decode_body(json_body(doc), TINY, content_type)
    with contextlib.suppress(BadRequest):
        ts.decode_body(json_body(doc), DIGITS, content_type)


@given(st.dictionaries(st.sampled_from(["data", "body", "x", "tag", "z"]), st.binary(max_size=40)))
def test_any_input_map_gives_tensors_or_bad_request(entries: dict[str, bytes]) -> None:
    for sig in (TINY, DIGITS, IMAGES):
        with contextlib.suppress(BadRequest):
            ts.decode_inputs(entries, sig)
