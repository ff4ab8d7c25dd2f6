"""Hostile gRPC requests to a real gateway over the real ONNX runner: never INTERNAL.

Property tests: valid digits ModelInferRequests mutated anywhere, any ModelInferRequest,
and their wire bytes cut, flipped or padded (or no message at all) go to ModelInfer as
raw bytes; the status is OK or a client error (never INTERNAL, UNKNOWN, UNAVAILABLE,
DATA_LOSS), and a good request right after is still served. DEADLINE_EXCEEDED is allowed
only to a message whose `timeout` parameter asked for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway import client
from gateway.protocol import v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.tensors import DATATYPES, InferRequest, Tensor
from tests.live import RunningGateway
from tests.strategies import (
    PB_CONTENTS,
    PB_PARAMS,
    grpc_wire_bytes,
    model_infer_requests,
    pb_shapes,
)

pytestmark = pytest.mark.reliability

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
LEAKS = ("Traceback", "object at 0x", 'File "', "/tmp/", ".sock", "/work/")


@pytest.fixture(scope="module")
def channel(onnx_gateway: RunningGateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(onnx_gateway.grpc_address) as ch:
        yield ch


@st.composite
def digits_messages(draw: st.DrawFn) -> pb.ModelInferRequest:
    """A valid digits request, then one to three of its fields set to anything."""
    x = np.asarray(draw(st.lists(st.floats(0, 16, width=32), min_size=64, max_size=64)))
    msg = v2_grpc.request_to_pb(
        InferRequest("digits", (Tensor("pixels", "FP32", x.astype(np.float32).reshape(1, 64)),))
    )
    t = msg.inputs[0]
    for _ in range(draw(st.integers(1, 3))):
        what = draw(
            st.sampled_from(["datatype", "shape", "raw", "contents", "param", "input param",
                             "model", "version", "id", "output", "second input"])
        )  # fmt: skip
        if what == "datatype":
            t.datatype = draw(st.sampled_from(list(DATATYPES)) | st.text(max_size=6))
        elif what == "shape":
            del t.shape[:]
            t.shape.extend(draw(pb_shapes))
        elif what == "raw":
            del msg.raw_input_contents[:]
            n = draw(st.sampled_from([0, 255, 256, 257, 512, 4]))
            msg.raw_input_contents.extend([b"\0" * n] * draw(st.integers(0, 2)))
        elif what == "contents":
            field = draw(st.sampled_from(list(PB_CONTENTS)))
            right = field == "fp32_contents" and draw(st.booleans())
            getattr(t.contents, field).extend([0.5] * 64 if right else draw(PB_CONTENTS[field]))
            if draw(st.booleans()):
                del msg.raw_input_contents[:]
        elif what in ("param", "input param"):
            into = msg.parameters if what == "param" else t.parameters
            key = draw(st.sampled_from(["timeout", "variant", "binary_data_output", "priority"]))
            kind, values = draw(st.sampled_from(PB_PARAMS))
            setattr(into[key], kind, draw(values))
        elif what == "model":
            msg.model_name = draw(st.sampled_from(["digits@onnx", "digits@nope", "nope", ""]))
        elif what == "version":
            versions = st.sampled_from(["1", "2", "0", "-1", "\u0661"]) | st.text(max_size=4)
            msg.model_version = draw(versions)
        elif what == "id":
            msg.id = draw(st.text(max_size=10))
        elif what == "output":
            o = msg.outputs.add(name=draw(st.sampled_from(["logits", "nope", ""])))
            kind, values = draw(st.sampled_from(PB_PARAMS))
            setattr(o.parameters["binary_data"], kind, draw(values))
        else:
            msg.inputs.add().CopyFrom(t)
            msg.raw_input_contents.append(b"\0" * 256)
    return msg


def _any_digits_message() -> st.SearchStrategy[pb.ModelInferRequest]:
    def named(msg: pb.ModelInferRequest) -> pb.ModelInferRequest:
        msg.model_name = "digits"
        return msg

    return digits_messages() | model_infer_requests().map(named)


def _asks_for_expiry(wire: bytes) -> bool:
    """Whether the message sets a `timeout` parameter (microseconds) that may expire."""
    try:
        msg = pb.ModelInferRequest.FromString(wire)
    except DecodeError:
        return False
    return "timeout" in msg.parameters


# Metadata a client may add: a variant pin of any text (grpc refuses non-ASCII values on
# the way out, so those go percent-free as they are), or none.
metadata = st.none() | st.tuples(
    st.tuples(
        st.sampled_from(["servegate-variant", "authorization", "grpc-timeout-x"]),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8),
    )
)


def check_answer(
    channel: grpc.Channel, wire: bytes, meta: tuple[tuple[str, str], ...] | None = None
) -> None:
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    try:
        infer(wire, timeout=20, metadata=meta)
        event("OK")
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
        event(code.name)
        allowed = CLIENT_ERRORS | (
            {grpc.StatusCode.DEADLINE_EXCEEDED} if _asks_for_expiry(wire) else set()
        )
        assert code in allowed, (code, details)
        assert not any(leak in details for leak in LEAKS), details


def check_good_request_served(channel: grpc.Channel) -> None:
    out = client.infer_grpc(channel, "digits", {"pixels": np.ones((1, 64), np.float32)})
    assert out.outputs[0].shape == (1, 10)


@FUZZ
@given(_any_digits_message(), metadata)
def test_any_message(
    channel: grpc.Channel,
    msg: pb.ModelInferRequest,
    meta: tuple[tuple[str, str], ...] | None,
) -> None:
    check_answer(channel, msg.SerializeToString(), meta)
    check_good_request_served(channel)


@FUZZ
@given(grpc_wire_bytes(_any_digits_message()))
def test_any_bytes(channel: grpc.Channel, wire: bytes) -> None:
    check_answer(channel, wire)
    check_good_request_served(channel)
