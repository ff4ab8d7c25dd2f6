"""Our TF Serving messages against the official `tensorflow_serving` stubs, both ways.

The official pb2 modules import all of TensorFlow (and its descriptors clash with any
second definition of the same names), so they run in one subprocess: it parses the bytes
we made with the official classes, and makes the same messages with the official
classes (`tf.make_tensor_proto`, `Any.Pack`) for us to compare byte for byte and parse.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from gateway.backends.tfserving import (
    metadata_from_pb,
    request_to_pb,
    response_from_pb,
    tensor_from_pb,
)
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import pack_signature_defs, unpack_signature_defs
from gateway.protocol.tfserving_tensors import DTYPES
from gateway.tensors import InferRequest, RequestedOutput, Tensor

pytestmark = pytest.mark.slow

_rng = np.random.default_rng(7)

# case -> array; each one travels as the single input "x" of a PredictRequest.
CASES: dict[str, np.ndarray] = {
    "fp32": _rng.normal(size=(3, 64)).astype(np.float32),
    "fp32_one": np.array([[2.5]], dtype=np.float32),
    "fp32_empty": np.zeros((0, 10), dtype=np.float32),
    "fp64": _rng.normal(size=(2, 3)),
    "fp16": _rng.normal(size=(4,)).astype(np.float16),
    "bf16": _rng.normal(size=(2, 2)).astype(ml_dtypes.bfloat16),
    "int8": np.array([[-128, 0, 127]], dtype=np.int8),
    "int16": np.array([-300, 300], dtype=np.int16),
    "int32": np.arange(-5, 5, dtype=np.int32).reshape(2, 5),
    "int64": np.array([-(2**40), 2**40], dtype=np.int64),
    "uint8": np.arange(0, 256, 51, dtype=np.uint8),
    "uint16": np.array([0, 65535], dtype=np.uint16),
    "uint32": np.array([[0, 2**32 - 1]], dtype=np.uint32),
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "bool": np.array([[True, False, True]]),
    "bytes": np.array([b"servegate", b"", b"\x00\xff"], dtype=object),
}
# tf.make_tensor_proto writes typed *_val fields, not tensor_content, for these; every
# other case must be byte-identical.
TYPED_FIELD_CASES = {"fp32_one", "bool", "uint16"}

OFFICIAL = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2, get_model_status_pb2, predict_pb2)

    job = pickle.load(sys.stdin.buffer)
    out = {"parsed": {}, "requests": {}, "responses_content": {}, "responses_fields": {}}
    # TF's AsProtoField (TF Serving's default reply encoding): the typed field per dtype.
    FIELD = {"float32": "float_val", "float64": "double_val", "int8": "int_val",
             "int16": "int_val", "int32": "int_val", "uint8": "int_val", "uint16": "int_val",
             "int64": "int64_val", "uint32": "uint32_val", "uint64": "uint64_val",
             "bool": "bool_val", "float16": "half_val", "bfloat16": "half_val",
             "object": "string_val"}

    for case, data in job["ours"].items():
        req = predict_pb2.PredictRequest.FromString(data)
        spec = req.model_spec
        out["parsed"][case] = {
            "name": spec.name, "signature": spec.signature_name,
            "version": spec.version.value if spec.HasField("version") else None,
            "output_filter": list(req.output_filter),
            "inputs": {k: tf.make_ndarray(v) for k, v in req.inputs.items()},
        }
    for case, array in job["arrays"].items():
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "m"
        req.model_spec.signature_name = "serving_default"
        req.model_spec.version.value = 3
        req.output_filter.append("y")
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(array))
        out["requests"][case] = req.SerializeToString(deterministic=True)

        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = "m"
        reply.model_spec.version.value = 3
        reply.outputs["y"].CopyFrom(tf.make_tensor_proto(array))
        out["responses_content"][case] = reply.SerializeToString(deterministic=True)

        proto = tf.make_tensor_proto(array)
        proto.ClearField("tensor_content")
        for name in set(FIELD.values()):
            proto.ClearField(name)
        flat = array.reshape(-1)
        if FIELD[array.dtype.name] == "half_val":
            flat = flat.view(np.uint16)
        getattr(proto, FIELD[array.dtype.name]).extend(flat.tolist())
        assert (tf.make_ndarray(proto) == array).all(), case  # TF reads it as meant
        reply.outputs["y"].CopyFrom(proto)
        out["responses_fields"][case] = reply.SerializeToString(deterministic=True)

    ours_meta = get_model_metadata_pb2.GetModelMetadataResponse.FromString(job["metadata"])
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert ours_meta.metadata["signature_def"].Unpack(sigs)  # checks the type URL too
    out["parsed_metadata"] = {k: str(v) for k, v in sigs.signature_def.items()}

    sigs = get_model_metadata_pb2.SignatureDefMap()
    sig = sigs.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    for key, tensor, dtype, dims in (("pixels", "serving_default_pixels:0", 1, (-1, 64)),):
        sig.inputs[key].name = tensor
        sig.inputs[key].dtype = dtype
        sig.inputs[key].tensor_shape.dim.extend(
            [sig.inputs[key].tensor_shape.Dim(size=d) for d in dims])
    sig.outputs["logits"].name = "StatefulPartitionedCall:0"
    sig.outputs["logits"].dtype = 1
    sig.outputs["logits"].tensor_shape.dim.add(size=-1)
    sig.outputs["logits"].tensor_shape.dim.add(size=10)
    sigs.signature_def["__saved_model_init_op"].outputs["__saved_model_init_op"].name = "NoOp"
    meta = get_model_metadata_pb2.GetModelMetadataResponse()
    meta.model_spec.name = "digits"
    meta.model_spec.version.value = 1
    meta.metadata["signature_def"].Pack(sigs, deterministic=True)  # maps in key order
    out["metadata"] = meta.SerializeToString(deterministic=True)

    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "digits"
    req.metadata_field.append("signature_def")
    out["metadata_request"] = req.SerializeToString(deterministic=True)

    status = get_model_status_pb2.GetModelStatusResponse()
    for version, state in ((1, 30), (2, 20)):
        s = status.model_version_status.add(version=version, state=state)
        s.status.error_code = 0 if state == 30 else 14
        s.status.error_message = "" if state == 30 else "loading"
    out["status"] = status.SerializeToString(deterministic=True)
    out["parsed_status_request"] = str(
        get_model_status_pb2.GetModelStatusRequest.FromString(job["status_request"]))
    pickle.dump(out, sys.stdout.buffer)
    """
)


def _request(array: np.ndarray) -> InferRequest:
    return InferRequest(
        model_name="m",
        model_version="3",
        inputs=(Tensor.from_numpy("x", array),),
        outputs=(RequestedOutput("y"),),
    )


def _our_metadata() -> pb.GetModelMetadataResponse:
    sigs = pb.SignatureDefMap()
    sig = sigs.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["pixels"].name = "serving_default_pixels:0"
    sig.inputs["pixels"].dtype = pb.DT_FLOAT
    sig.inputs["pixels"].tensor_shape.dim.add(size=-1)
    sig.inputs["pixels"].tensor_shape.dim.add(size=64)
    sig.outputs["logits"].name = "StatefulPartitionedCall:0"
    sig.outputs["logits"].dtype = pb.DT_FLOAT
    sig.outputs["logits"].tensor_shape.dim.add(size=-1)
    sig.outputs["logits"].tensor_shape.dim.add(size=10)
    sigs.signature_def["__saved_model_init_op"].outputs["__saved_model_init_op"].name = "NoOp"
    meta = pack_signature_defs(sigs)
    meta.model_spec.name = "digits"
    meta.model_spec.version.value = 1
    return meta


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs the official stubs once for every case (TensorFlow takes seconds to import)."""
    script = tmp_path_factory.mktemp("official") / "official.py"
    script.write_text(OFFICIAL)
    status_request = pb.GetModelStatusRequest(model_spec=pb.ModelSpec(name="digits"))
    status_request.model_spec.version.value = 2
    job = {
        "ours": {
            c: request_to_pb(_request(a), "m").SerializeToString(deterministic=True)
            for c, a in CASES.items()
        },
        "arrays": CASES,
        "metadata": _our_metadata().SerializeToString(deterministic=True),
        "status_request": status_request.SerializeToString(),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        input=pickle.dumps(job),
        capture_output=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = pickle.loads(done.stdout)
    return result


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("case", sorted(CASES))
def test_our_request_parses_as_the_official_one(official: dict[str, Any], case: str) -> None:
    parsed = official["parsed"][case]
    assert (parsed["name"], parsed["signature"], parsed["version"]) == ("m", "serving_default", 3)
    assert parsed["output_filter"] == ["y"]
    assert list(parsed["inputs"]) == ["x"]
    got = parsed["inputs"]["x"]
    want = CASES[case]
    if want.dtype == object:  # TensorFlow reads strings back as object arrays of bytes
        assert got.tolist() == want.tolist()
    else:
        _same(got, want)


@pytest.mark.parametrize("case", sorted(CASES))
def test_our_request_bytes_equal_the_official_ones(official: dict[str, Any], case: str) -> None:
    ours = request_to_pb(_request(CASES[case]), "m").SerializeToString(deterministic=True)
    theirs = official["requests"][case]
    if case in TYPED_FIELD_CASES:
        assert ours != theirs  # same tensor, other encoding: read back below
    else:
        assert ours == theirs
    decoded = pb.PredictRequest.FromString(theirs)
    _same(tensor_from_pb("x", decoded.inputs["x"]).data, CASES[case])


@pytest.mark.parametrize("encoding", ["responses_content", "responses_fields"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_official_responses_decode(official: dict[str, Any], encoding: str, case: str) -> None:
    reply = pb.PredictResponse.FromString(official[encoding][case])
    response = response_from_pb(reply, _request(CASES[case]))
    assert (response.model_name, response.model_version) == ("m", "3")
    (tensor,) = response.outputs
    assert tensor.name == "y"
    assert DTYPES[tensor.datatype] == reply.outputs["y"].dtype
    _same(tensor.data, CASES[case])


def test_metadata_both_ways(official: dict[str, Any]) -> None:
    ours = _our_metadata()
    assert ours.SerializeToString(deterministic=True) == official["metadata"]
    assert set(official["parsed_metadata"]) == {"serving_default", "__saved_model_init_op"}
    theirs = pb.GetModelMetadataResponse.FromString(official["metadata"])
    assert unpack_signature_defs(theirs) == unpack_signature_defs(ours)
    assert metadata_from_pb(theirs) == {
        "name": "digits",
        "versions": ["1"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }
    request = pb.GetModelMetadataRequest(
        model_spec=pb.ModelSpec(name="digits"), metadata_field=["signature_def"]
    )
    assert request.SerializeToString(deterministic=True) == official["metadata_request"]


def test_model_status_both_ways(official: dict[str, Any]) -> None:
    status = pb.GetModelStatusResponse.FromString(official["status"])
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, pb.ModelVersionStatus.AVAILABLE),
        (2, pb.ModelVersionStatus.LOADING),
    ]
    assert status.model_version_status[1].status.error_code == pb.UNAVAILABLE
    ours = pb.GetModelStatusResponse()
    ours.model_version_status.add(
        version=1, state=pb.ModelVersionStatus.AVAILABLE, status=pb.StatusProto(error_code=pb.OK)
    )
    ours.model_version_status.add(
        version=2,
        state=pb.ModelVersionStatus.LOADING,
        status=pb.StatusProto(error_code=pb.UNAVAILABLE, error_message="loading"),
    )
    assert ours.SerializeToString(deterministic=True) == official["status"]
    assert "version {\n    value: 2\n  }" in official["parsed_status_request"]
    assert 'name: "digits"' in official["parsed_status_request"]
