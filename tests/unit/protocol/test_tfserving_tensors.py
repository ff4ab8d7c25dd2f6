"""TensorProto <-> Tensor as a server reads a client's: both encodings, TensorFlow's fill rule,
and every hostile TensorProto a BadRequest (no allocation past the fill bound).
(Byte compatibility with the official stubs: tests/unit/backends/test_tfserving_wire.py,
and the conformance tests that send the official messages to a gateway.)"""

from __future__ import annotations

import contextlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_tensors import tensor_from_pb, tensor_to_pb
from gateway.tensors import DATATYPES, Tensor
from tests.strategies import assert_same, tensors


@given(tensors(list(DATATYPES)), st.booleans())
def test_round_trip_in_either_encoding(t: Tensor, typed: bool) -> None:
    proto = tensor_to_pb(t, typed=typed)
    assert bool(proto.tensor_content) == (not typed and t.datatype != "BYTES" and t.data.size > 0)
    assert_same(tensor_from_pb(t.name, pb.TensorProto.FromString(proto.SerializeToString())), t)


def _proto(dtype: int, shape: list[int], **values: object) -> pb.TensorProto:
    return pb.TensorProto(
        dtype=dtype,  # type: ignore[arg-type]
        tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=d) for d in shape]),
        **values,  # type: ignore[arg-type]
    )


def test_typed_answers_are_what_clients_read_directly() -> None:
    proto = tensor_to_pb(Tensor("y", "FP32", np.array([[1.5, 2.0]], np.float32)))
    assert list(proto.float_val) == [1.5, 2.0]
    half = tensor_to_pb(Tensor("h", "BF16", np.array([1.0], ml_dtypes.bfloat16)))
    assert list(half.half_val) == [0x3F80]


def test_fewer_values_fill_as_tensorflow_reads_them() -> None:
    assert tensor_from_pb("x", _proto(pb.DT_FLOAT, [2, 2], float_val=[1, 2])).data.tolist() == [
        [1, 2],
        [2, 2],
    ]
    assert tensor_from_pb("x", _proto(pb.DT_INT64, [3])).data.tolist() == [0, 0, 0]
    strings = tensor_from_pb("s", _proto(pb.DT_STRING, [2], string_val=[b"a"]))
    assert strings.data.tolist() == [b"a", b"a"]
    assert tensor_from_pb("s", _proto(pb.DT_STRING, [2])).data.tolist() == [b"", b""]


@pytest.mark.parametrize(
    ("proto", "words"),
    [
        (_proto(pb.DT_COMPLEX64, [1]), "unsupported dtype DT_COMPLEX64"),
        (_proto(99, [1]), "unsupported dtype 99"),
        (_proto(pb.DT_FLOAT, [-1, 2]), "not fully known"),
        (pb.TensorProto(dtype=pb.DT_FLOAT, tensor_shape=pb.TensorShapeProto(unknown_rank=True)),
         "not fully known"),
        (_proto(pb.DT_FLOAT, [2**40, 2**40]), "too large"),
        (_proto(pb.DT_FLOAT, [2**30]), "bound on a filled tensor"),
        (_proto(pb.DT_FLOAT, [2**25], float_val=[1.0]), "bound on a filled tensor"),
        (_proto(pb.DT_FLOAT, [1], float_val=[1.0, 2.0]), "2 values for shape"),
        (_proto(pb.DT_FLOAT, [3], tensor_content=b"\0" * 8), "tensor_content"),
        (_proto(pb.DT_STRING, [1], tensor_content=b"abcd"), "string_val"),
        (_proto(pb.DT_INT8, [1], int_val=[300]), "outside the INT8 range"),
        (_proto(pb.DT_UINT8, [1], int_val=[-1]), "outside the UINT8 range"),
        (_proto(pb.DT_HALF, [1], half_val=[70000]), "outside the FP16 range"),
    ],
)  # fmt: skip
def test_hostile_tensor_protos_are_bad_requests(proto: pb.TensorProto, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        tensor_from_pb("x", proto)


@given(st.binary(max_size=80))
def test_any_tensor_proto_bytes_give_a_tensor_or_bad_request(data: bytes) -> None:
    try:
        proto = pb.TensorProto.FromString(data)
    except Exception:  # not a message at all: the servicer's parse answers that
        return
    with contextlib.suppress(BadRequest):
        tensor_from_pb("x", proto, max_fill_bytes=1 << 20)
