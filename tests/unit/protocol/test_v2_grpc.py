"""gRPC codecs: raw contents round trips for every datatype; typed contents; any malformed
message or bytes -> BadRequest, huge shapes refused before allocating."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.protocol import v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.tensors import DATATYPES, InferRequest, InferResponse, RequestedOutput, Tensor
from tests.strategies import (
    assert_same,
    grpc_wire_bytes,
    model_infer_requests,
    requests_of,
    small_shapes,
    tensors,
)


def _unique(ts: list[Tensor]) -> tuple[Tensor, ...]:
    return tuple(Tensor(f"{t.name}{i}", t.datatype, t.data) for i, t in enumerate(ts))


@given(st.lists(tensors(), min_size=1, max_size=4))
def test_request_round_trip_through_wire_bytes(ts: list[Tensor]) -> None:
    req = InferRequest(
        model_name="m", model_version="2", id="abc", inputs=_unique(ts),
        outputs=(RequestedOutput("y"),), parameters={"variant": "onnx", "timeout": 5, "f": 0.5},
    )  # fmt: skip
    wire = v2_grpc.request_to_pb(req).SerializeToString()
    back = v2_grpc.request_from_pb(pb.ModelInferRequest.FromString(wire))
    assert (back.model_name, back.model_version, back.id) == ("m", "2", "abc")
    assert back.parameters == {"variant": "onnx", "timeout": 5, "f": 0.5}
    assert [o.name for o in back.outputs] == ["y"]
    for a, b in zip(req.inputs, back.inputs, strict=True):
        assert_same(a, b)


@given(st.lists(tensors(), min_size=1, max_size=4))
def test_response_round_trip_uses_raw_output_contents(ts: list[Tensor]) -> None:
    resp = InferResponse(model_name="m", model_version="1", outputs=_unique(ts))
    msg = v2_grpc.response_to_pb(resp)
    assert len(msg.raw_output_contents) == len(ts)
    assert all(not o.HasField("contents") for o in msg.outputs)
    back = v2_grpc.response_from_pb(pb.ModelInferResponse.FromString(msg.SerializeToString()))
    for a, b in zip(resp.outputs, back.outputs, strict=True):
        assert_same(a, b)


def test_typed_contents_are_accepted() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    t.contents.fp32_contents.extend([1, 2, 3, 4])
    b = msg.inputs.add(name="s", datatype="BYTES", shape=[1])
    b.contents.bytes_contents.append(b"hi")
    req = v2_grpc.request_from_pb(msg)
    np.testing.assert_array_equal(req.inputs[0].data, [[1, 2], [3, 4]])
    assert req.inputs[1].data.tolist() == [b"hi"]


def _with(**kw: object) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype=kw.get("datatype", "FP32"), shape=kw.get("shape", [2]))
    if "raw" in kw:
        msg.raw_input_contents.extend(kw["raw"])  # type: ignore[arg-type]
    if "fp32" in kw:
        msg.inputs[0].contents.fp32_contents.extend(kw["fp32"])  # type: ignore[arg-type]
    return msg


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (_with(raw=[b"\0" * 7]), "expected 8 bytes"),
        (_with(raw=[b"\0" * 8, b"\0"]), "2 entries for 1 inputs"),
        (_with(fp32=[1.0]), "1 values in contents"),
        (_with(datatype="FP16", fp32=[1.0, 2.0]), "must be sent in raw_input_contents"),
        (_with(datatype="X", raw=[b""]), "unknown datatype"),
        (_with(shape=[-2], raw=[b""]), "negative dimension"),
        (_with(raw=[b"\0" * 8], fp32=[1.0, 2.0]), "contents must be empty"),
    ],
)
def test_malformed_requests_are_bad_requests(msg: pb.ModelInferRequest, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        v2_grpc.request_from_pb(msg)


# ---- any message, any bytes: an InferRequest or BadRequest, never another error ----


def _decoded_or_refused(decode: Callable[[], InferRequest]) -> InferRequest | None:
    try:
        req = decode()
    except BadRequest as exc:
        assert "Traceback" not in exc.message and "object at 0x" not in exc.message
        return None
    for t in req.inputs:  # what came through is well formed
        assert t.data.dtype == DATATYPES[t.datatype].dtype
    assert all(o.binary is None or isinstance(o.binary, bool) for o in req.outputs)
    return req


@settings(max_examples=1000, deadline=None)
@given(model_infer_requests())
def test_any_message_is_a_request_or_a_bad_request(msg: pb.ModelInferRequest) -> None:
    req = _decoded_or_refused(lambda: v2_grpc.request_from_pb(msg))
    if req is not None:  # and what decodes can be forwarded to a runner as it is
        v2_grpc.request_to_pb(req).SerializeToString()


_valid = requests_of(st.lists(tensors(shapes=small_shapes), min_size=1, max_size=3)).map(
    v2_grpc.request_to_pb
)


@settings(max_examples=1000, deadline=None)
@given(grpc_wire_bytes(model_infer_requests() | _valid))
def test_any_bytes_are_a_request_or_a_bad_request(wire: bytes) -> None:
    _decoded_or_refused(lambda: v2_grpc.request_from_bytes(wire))


def test_undecodable_bytes_are_a_bad_request() -> None:
    for wire in (b"\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28"):  # bad tag, cut, bad UTF-8
        with pytest.raises(BadRequest, match="undecodable ModelInferRequest message"):
            v2_grpc.request_from_bytes(wire)
    good = v2_grpc.request_to_pb(InferRequest("m", (Tensor("x", "INT8", np.ones(2, np.int8)),)))
    assert v2_grpc.request_from_bytes(good.SerializeToString()).inputs[0].data.tolist() == [1, 1]


HUGE_SHAPES = [[2**40, 2**40], [0, 2**62, 4], [2**62, 0, 2**62], [2**63 - 1], [1] * 33]


@pytest.mark.parametrize("shape", HUGE_SHAPES)
@pytest.mark.parametrize("datatype", ["FP32", "BYTES", "BOOL"])
@pytest.mark.parametrize("how", ["raw", "contents", "nothing"])
def test_huge_shapes_are_refused_without_allocating(
    shape: list[int], datatype: str, how: str
) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="x", datatype=datatype, shape=shape)
    if how == "raw":
        msg.raw_input_contents.append(b"\0" * 16)
    elif how == "contents":
        t.contents.bytes_contents.append(b"a")
        t.contents.fp32_contents.append(1.0)
        t.contents.bool_contents.append(True)
    tracemalloc.start()
    try:
        with pytest.raises(BadRequest, match="tensor 'x': "):
            v2_grpc.request_from_pb(msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    ("datatype", "field", "values", "message"),
    [
        ("INT8", "int_contents", [300], "a value in contents is outside the INT8 range"),
        ("UINT16", "uint_contents", [70000], "a value in contents is outside the UINT16 range"),
        ("INT32", "int_contents", [1, 2, 3], "3 values in contents for shape [2]"),
        ("BYTES", "bytes_contents", [b"a"], "1 values in contents for shape [2]"),
        ("FP32", "fp64_contents", [1.0, 2.0], "0 values in contents for shape [2]"),
    ],
)
def test_typed_contents_must_fit(
    datatype: str, field: str, values: list[Any], message: str
) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(
        name="x", datatype=datatype, shape=[len(values) if "range" in message else 2]
    )
    getattr(t.contents, field).extend(values)
    with pytest.raises(BadRequest, match=re.escape(f"tensor 'x': {message}")):
        v2_grpc.request_from_pb(msg)


def test_output_binary_data_must_be_a_bool() -> None:
    msg = _with(raw=[b"\0" * 8])
    msg.outputs.add(name="y").parameters["binary_data"].int64_param = 1
    with pytest.raises(BadRequest, match="output 'y': binary_data must be a boolean"):
        v2_grpc.request_from_pb(msg)


def test_parameters_past_int64_travel_as_uint64() -> None:
    req = InferRequest("m", (), parameters={"big": 2**64 - 1, "small": -(2**63), "f": 1e308})
    back = v2_grpc.request_from_bytes(v2_grpc.request_to_pb(req).SerializeToString())
    assert back.parameters == {"big": 2**64 - 1, "small": -(2**63), "f": 1e308}
