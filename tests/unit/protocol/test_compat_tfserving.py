"""TF Serving codecs: REST row/columnar bodies and answers, gRPC Predict, status, metadata.

Every example body is one TF Serving's REST API document shows, or its edge; every
malformed one must give BadRequest, never another error.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Signature
from gateway.errors import BadRequest
from gateway.protocol import compat_tfserving as tfs
from gateway.protocol import compat_tfserving_meta as meta
from gateway.protocol import nested_json
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import unpack_signature_defs
from gateway.protocol.tfserving_tensors import tensor_to_pb
from gateway.tensors import InferResponse, Tensor
from tests.strategies import Deep, arrays, json_body, json_values, mutated

DIGITS = Signature.model_validate(
    {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
     "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}
)  # fmt: skip
TINY = Signature.model_validate(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                {"name": "tag", "datatype": "BYTES", "shape": [-1]}],
     "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
)  # fmt: skip
SCALARS = Signature.model_validate(
    {"inputs": [{"name": "tag", "datatype": "BYTES", "shape": [-1]}],
     "outputs": [{"name": "n", "datatype": "INT64", "shape": [-1]}]}
)  # fmt: skip


def decode(doc: Any, sig: Signature = TINY) -> tuple[dict[str, np.ndarray], str]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    req, fmt = tfs.decode_predict(body, sig, model_name="m", model_version="1")
    assert (req.model_name, req.model_version) == ("m", "1")
    return {t.name: t.data for t in req.inputs}, fmt


# ---- REST requests ----------------------------------------------------------------------


def test_row_format_single_input_stacks_rows() -> None:
    got, fmt = decode({"instances": [[1.0] * 64, [2] * 64]}, DIGITS)
    assert fmt == "row"
    assert got["pixels"].dtype == np.float32 and got["pixels"].shape == (2, 64)
    assert got["pixels"][1, 0] == 2.0


def test_row_format_single_input_accepts_named_objects_and_b64() -> None:
    got, _ = decode({"instances": [{"pixels": [0.5] * 64}]}, DIGITS)
    assert got["pixels"].shape == (1, 64)
    got, _ = decode({"instances": ["foo", {"b64": base64.b64encode(b"\xff\x00").decode()}]},
                    SCALARS)  # fmt: skip
    assert got["tag"].tolist() == [b"foo", b"\xff\x00"]


def test_row_format_several_inputs_is_a_list_of_objects() -> None:
    got, fmt = decode(
        {
            "instances": [
                {"x": [1, 2, 3, 4], "tag": "a"},
                {"x": [5, 6, 7, 8], "tag": {"b64": "Yg=="}},
            ]
        }
    )
    assert fmt == "row"
    np.testing.assert_array_equal(got["x"], np.arange(1, 9, dtype=np.float32).reshape(2, 4))
    assert got["tag"].tolist() == [b"a", b"b"]


def test_columnar_format_takes_a_tensor_or_named_tensors() -> None:
    got, fmt = decode({"inputs": [[1.0] * 64]}, DIGITS)
    assert fmt == "columnar" and got["pixels"].shape == (1, 64)
    got, fmt = decode(
        {"signature_name": "serving_default",
         "inputs": {"x": [[1, 2, 3, 4]], "tag": ["t"], "ignored": [1]}}
    )  # fmt: skip
    assert got["x"].shape == (1, 4) and got["tag"].tolist() == [b"t"]
    got, _ = decode({"inputs": 3.5}, DIGITS)  # a scalar: the signature check refuses it later
    assert got["pixels"].shape == ()


def test_nan_and_infinity_tokens_are_accepted_for_floats() -> None:
    got, _ = decode(b'{"instances": [[NaN, Infinity, -Infinity, 1]]}', TINY_X)
    assert np.isnan(got["x"][0, 0]) and got["x"][0, 1] == np.inf and got["x"][0, 2] == -np.inf


TINY_X = Signature.model_validate(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
     "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
)  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (b"", "JSON Parse error"),
        (b"[1, 2]", "not an object"),
        ({}, "Missing 'inputs' or 'instances' key"),
        ({"instances": [], "inputs": []}, "only one of"),
        ({"instances": {"x": 1}}, "'instances' to be a list"),
        ({"instances": []}, "No values in 'instances'"),
        ({"instances": [[1, 2, 3, 4]]}, "plain list"),
        ({"instances": [{"x": [1, 2, 3, 4]}]}, "must be equal to"),
        ({"instances": [{"x": [1, 2, 3, 4], "tag": "a"}, [1]]}, "Expecting object"),
        ({"instances": [{"x": [1, 2, 3, 4], "tag": "a"}, {"x": [1, 2], "tag": "b"}]},
         "equal lengths"),
        ({"instances": [{"x": [1, 2, 3, "4"], "tag": "a"}]}, "FP32 data must be JSON numbers"),
        ({"instances": [{"x": [1, 2, 3, 4], "tag": {"b64": "!!"}}]}, "base64"),
        ({"instances": [{"x": [1, 2, 3, 4], "tag": 7}]}, "BYTES data must be"),
        ({"inputs": [[1, 2, 3, 4]]}, "plain value/list"),
        ({"inputs": {"x": [[1, 2, 3, 4]]}}, "Missing named input: tag"),
        ({"inputs": {"x": [[1, 2], [3]], "tag": ["a", "b"]}}, "equal lengths"),
        ({"signature_name": 3, "inputs": {}}, "must be a string"),
        ({"inputs": {"x": Deep(40), "tag": ["a"]}}, "deeper than 32"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_bad_requests_naming_the_fault(doc: Any, words: str) -> None:
    body = doc if isinstance(doc, bytes) else json_body(doc)
    with pytest.raises(BadRequest, match=words):
        tfs.decode_predict(body, TINY, model_name="m")


def test_an_unknown_signature_is_failed_precondition_as_tf_serving_answers() -> None:
    with pytest.raises(tfs.SignatureNotFound) as err:
        decode({"signature_name": "classify", "instances": [[1.0] * 64]}, DIGITS)
    assert err.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.http_status == 400
    assert 'Serving signature key "classify" not found.' in err.value.message


@given(mutated(st.builds(lambda: {"instances": [{"x": [1, 2, 3, 4], "tag": "a"}]}))
       | mutated(st.builds(lambda: {"inputs": {"x": [[1.5] * 4], "tag": ["b"]}}))
       | json_values)  # fmt: skip
def test_any_json_gives_a_request_or_bad_request(doc: Any) -> None:
    with contextlib.suppress(BadRequest):
        tfs.decode_predict(json_body(doc), TINY, model_name="m")


@given(st.binary(max_size=64))
def test_any_bytes_give_a_request_or_bad_request(body: bytes) -> None:
    with contextlib.suppress(BadRequest):
        tfs.decode_predict(body, TINY, model_name="m")


@given(arrays("FP32", st.tuples(st.integers(1, 4), st.just(4))),
       st.lists(st.binary(max_size=6), min_size=4, max_size=4))  # fmt: skip
def test_rows_and_columns_carry_the_same_tensors(x: np.ndarray, tags: list[bytes]) -> None:
    tag = [{"b64": base64.b64encode(t).decode()} for t in tags[: len(x)]]
    rows = {"instances": [{"x": r, "tag": t} for r, t in zip(x.tolist(), tag, strict=True)]}
    columns = {"inputs": {"x": x.tolist(), "tag": tag}}
    for doc in (rows, columns):
        got, _ = decode(doc)
        np.testing.assert_array_equal(got["x"], x)
        assert got["tag"].tolist() == tags[: len(x)]


# ---- REST answers -----------------------------------------------------------------------


def _answer(*outputs: Tensor) -> InferResponse:
    return InferResponse("m", outputs, model_version="1")


def test_one_output_is_answered_bare_in_both_formats() -> None:
    y = np.array([[0.1, 2], [3, 4]], np.float32)
    resp = _answer(Tensor("y", "FP32", y))
    assert orjson.loads(tfs.encode_predict(resp, "row")) == {
        "predictions": [[0.1, 2.0], [3.0, 4.0]]
    }
    assert orjson.loads(tfs.encode_predict(resp, "columnar")) == {
        "outputs": [[0.1, 2.0], [3.0, 4.0]]
    }


def test_several_outputs_are_objects_per_row_or_by_name() -> None:
    resp = _answer(
        Tensor("scores", "FP32", np.array([[1.0], [2.0]], np.float32)),
        Tensor("label", "BYTES", np.array([b"cat", b"\xff"], dtype=object)),
        Tensor("image_bytes", "BYTES", np.array([b"ab", b"c"], dtype=object)),
    )
    rows = orjson.loads(tfs.encode_predict(resp, "row"))["predictions"]
    assert rows == [
        {"scores": [1.0], "label": "cat", "image_bytes": {"b64": "YWI="}},
        {"scores": [2.0], "label": {"b64": "/w=="}, "image_bytes": {"b64": "Yw=="}},
    ]
    columns = orjson.loads(tfs.encode_predict(resp, "columnar"))["outputs"]
    assert columns["label"] == ["cat", {"b64": "/w=="}]


def test_non_finite_outputs_use_tf_servings_tokens() -> None:
    resp = _answer(Tensor("y", "FP32", np.array([[np.nan, np.inf, 1.5]], np.float32)))
    assert tfs.encode_predict(resp, "row") == b'{"predictions":[[NaN,Infinity,1.5]]}'


def test_row_answers_need_a_shared_batch_dimension() -> None:
    resp = _answer(Tensor("a", "FP32", np.zeros((2, 1), np.float32)),
                   Tensor("b", "FP32", np.zeros((3,), np.float32)))  # fmt: skip
    with pytest.raises(BadRequest, match="columnar"):
        tfs.encode_predict(resp, "row")
    assert orjson.loads(tfs.encode_predict(resp, "columnar"))["outputs"]["b"] == [0.0] * 3


# ---- gRPC -------------------------------------------------------------------------------


def _predict(**spec: Any) -> pb.PredictRequest:
    msg = pb.PredictRequest(model_spec=pb.ModelSpec(name="digits", **spec))
    msg.inputs["pixels"].CopyFrom(
        tensor_to_pb(Tensor("pixels", "FP32", np.ones((2, 64), np.float32)), typed=False)
    )
    return msg


def test_predict_request_keeps_version_label_and_output_filter() -> None:
    msg = _predict(signature_name="serving_default")
    msg.model_spec.version.value = 1
    msg.output_filter.extend(["logits", "logits"])
    req, label = tfs.request_from_predict(msg)
    assert (req.model_name, req.model_version, label) == ("digits", "1", None)
    assert [o.name for o in req.outputs] == ["logits"]
    assert req.inputs[0].data.shape == (2, 64)
    req, label = tfs.request_from_predict(_predict(version_label="jax"))
    assert (req.model_version, label) == ("", "jax")


@pytest.mark.parametrize(
    ("msg", "words"),
    [
        (pb.PredictRequest(), "Missing ModelSpec"),
        (pb.PredictRequest(model_spec=pb.ModelSpec(name="m")), "no inputs"),
        (_predict(signature_name="other"), "signature key"),
    ],
)
def test_bad_predict_requests(msg: pb.PredictRequest, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        tfs.request_from_predict(msg)


def test_predict_response_answers_typed_fields_and_the_version() -> None:
    resp = _answer(Tensor("logits", "FP32", np.array([[1.5, -2]], np.float32)))
    reply = tfs.predict_response(resp, "digits@jax")
    assert reply.model_spec.name == "digits@jax"
    assert reply.model_spec.version.value == 1
    assert reply.model_spec.signature_name == "serving_default"
    out = reply.outputs["logits"]
    assert list(out.float_val) == [1.5, -2.0] and not out.tensor_content
    assert [d.size for d in out.tensor_shape.dim] == [1, 2]


# ---- status and metadata ----------------------------------------------------------------


def test_status_json_is_tf_servings() -> None:
    states = meta.version_states(["1", "2"], ready=True, runner_state=None)
    assert meta.status_json(states) == {
        "model_version_status": [
            {
                "version": v,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in ("1", "2")
        ]
    }


@pytest.mark.parametrize(
    ("runner", "state", "code"),
    [("STARTING", "LOADING", "OK"), ("RESTARTING", "LOADING", "OK"),
     ("FAILED", "END", "UNAVAILABLE"), ("STOPPED", "END", "UNAVAILABLE"),
     (None, "UNKNOWN", "UNAVAILABLE"), ("READY", "UNKNOWN", "UNAVAILABLE")],
)  # fmt: skip
def test_a_variant_not_ready_is_not_available(runner: str | None, state: str, code: str) -> None:
    (s,) = meta.version_states(["1"], ready=False, runner_state=runner, reason="why")
    assert (s.state, s.error_code) == (state, code)
    (msg,) = meta.status_response([s]).model_version_status
    assert pb.ModelVersionStatus.State.Name(msg.state) == state and msg.version == 1


def test_metadata_is_the_signature_as_serving_default() -> None:
    doc = meta.metadata_json("digits", "1", TINY)
    assert doc["model_spec"] == {"name": "digits", "version": "1", "signature_name": ""}
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["tag"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "4"]
    reply = meta.metadata_response("digits", "1", TINY)
    assert reply.model_spec.version.value == 1
    unpacked = unpack_signature_defs(reply).signature_def["serving_default"]
    assert unpacked.outputs["y"].name == "StatefulPartitionedCall:0"


def test_metadata_fields_must_be_signature_def() -> None:
    meta.check_metadata_fields(["signature_def"])
    with pytest.raises(BadRequest, match="at least one"):
        meta.check_metadata_fields([])
    with pytest.raises(BadRequest, match="not supported"):
        meta.check_metadata_fields(["signature_def", "other"])


def test_nested_json_dumps_plain_when_tokens_are_needed() -> None:
    assert nested_json.dumps({"a": np.array([1.5], np.float32)}, tokens=True) == b'{"a":[1.5]}'
