"""TF Serving's callers against the gateway over real runners (onnx and jax): the official
`tensorflow-serving-api` stubs (in a subprocess: they import TensorFlow) on the gRPC
port, and plain HTTP calls shaped as TF Serving's REST docs show them. Every answer must
equal the v2 route's answer for the same input and variant."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.config import Repository
from tests.conformance import compat_gateway
from tests.live import LiveRunners, samples

pytestmark = pytest.mark.conformance

VARIANTS = ("onnx", "jax")


@pytest.fixture(scope="module")
def gateway(repository: Repository, runners: LiveRunners) -> Iterator[compat_gateway.CompatGateway]:
    gw = compat_gateway.start(repository, {kind: runners.hop(kind) for kind in VARIANTS})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def pixels(repository: Repository) -> np.ndarray:
    return samples(repository, "digits")["inputs"][:5].astype(np.float32)


@pytest.fixture(scope="module")
def v2_logits(gateway: compat_gateway.CompatGateway, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The v2 route's answer for `pixels`, per variant: what every other route must equal."""
    out = {}
    for variant in VARIANTS:
        doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(pixels.shape),
                           "data": pixels.reshape(-1).tolist()}]}  # fmt: skip
        reply = httpx.post(f"{gateway.http_url}/v2/models/digits@{variant}/infer", json=doc)
        assert reply.status_code == 200, reply.text
        (logits,) = reply.json()["outputs"]
        out[variant] = np.array(logits["data"], np.float32).reshape(logits["shape"])
    return out


def _pinned(url: str, variant: str, how: str) -> tuple[str, dict[str, str]]:
    """The REST URL prefix and headers that pin `variant` one of three ways."""
    base = f"{url}/v1/models/digits"
    if how == "label":
        return f"{base}/labels/{variant}", {}
    if how == "alias":
        return f"{url}/v1/models/digits@{variant}/versions/1", {}
    return base, {"servegate-variant": variant}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("how", ["label", "alias", "header"])
def test_rest_row_and_columnar_equal_v2(
    gateway: compat_gateway.CompatGateway,
    pixels: np.ndarray,
    v2_logits: dict[str, np.ndarray],
    variant: str,
    how: str,
) -> None:
    base, headers = _pinned(gateway.http_url, variant, how)
    # As TF Serving's docs show: {"instances": [...]} -> {"predictions": [...]}
    reply = httpx.post(f"{base}:predict", json={"instances": pixels.tolist()}, headers=headers)
    assert reply.status_code == 200, reply.text
    np.testing.assert_array_equal(
        np.array(reply.json()["predictions"], np.float32), v2_logits[variant]
    )
    # {"signature_name": ..., "inputs": {name: tensor}} -> {"outputs": ...}
    doc = {"signature_name": "serving_default", "inputs": {"pixels": pixels.tolist()}}
    reply = httpx.post(f"{base}:predict", json=doc, headers=headers)
    assert reply.status_code == 200, reply.text
    np.testing.assert_array_equal(np.array(reply.json()["outputs"], np.float32), v2_logits[variant])


def test_rest_answers_are_the_models(
    gateway: compat_gateway.CompatGateway, pixels: np.ndarray, repository: Repository
) -> None:
    reference = samples(repository, "digits")["logits"][:5]
    reply = httpx.post(f"{gateway.http_url}/v1/models/digits:predict",
                       json={"instances": pixels.tolist()})  # fmt: skip
    np.testing.assert_allclose(reply.json()["predictions"], reference, rtol=1e-4, atol=1e-4)


def test_rest_status_metadata_and_errors(gateway: compat_gateway.CompatGateway) -> None:
    url = f"{gateway.http_url}/v1/models/digits"
    assert httpx.get(url).json() == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert httpx.get(f"{url}/labels/jax").json()["model_version_status"][0]["state"] == "AVAILABLE"
    meta = httpx.get(f"{url}/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["pixels"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}, {"size": "64", "name": ""}
    ]  # fmt: skip
    reply = httpx.post(f"{gateway.http_url}/v1/models/half:predict", json={"instances": [1.0]})
    assert reply.status_code == 404 and "error" in reply.json()
    reply = httpx.post(f"{url}:predict", json={"instances": [[1.0, 5.0]]})
    assert reply.status_code == 400 and "pixels" in reply.json()["error"]


OFFICIAL_CLIENT = textwrap.dedent(
    """
    import pickle, sys
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
        prediction_service_pb2_grpc)

    job = pickle.load(sys.stdin.buffer)
    out = {"predict": {}, "float_val": {}, "spec": {}, "errors": {}}
    with grpc.insecure_channel(job["address"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for variant in job["variants"]:
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "digits"
            req.model_spec.signature_name = "serving_default"
            req.model_spec.version_label = variant
            req.inputs["pixels"].CopyFrom(tf.make_tensor_proto(job["pixels"]))
            req.output_filter.append("logits")
            reply = stub.Predict(req, 30)
            out["predict"][variant] = tf.make_ndarray(reply.outputs["logits"])
            out["float_val"][variant] = list(reply.outputs["logits"].float_val)
            out["spec"][variant] = (reply.model_spec.name, reply.model_spec.version.value,
                                    reply.model_spec.signature_name)
        # One value broadcast to a shape: TensorFlow's typed-field fill rule.
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "digits@onnx"
        req.inputs["pixels"].CopyFrom(tf.make_tensor_proto(0.0, shape=[2, 64]))
        out["zeros"] = tf.make_ndarray(stub.Predict(req, 30).outputs["logits"])

        meta_req = get_model_metadata_pb2.GetModelMetadataRequest()
        meta_req.model_spec.name = "digits"
        meta_req.metadata_field.append("signature_def")
        meta = stub.GetModelMetadata(meta_req, 30)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        assert meta.metadata["signature_def"].Unpack(sigs)
        sig = sigs.signature_def["serving_default"]
        out["metadata"] = {
            "version": meta.model_spec.version.value,
            "method": sig.method_name,
            "inputs": {k: (v.dtype, [d.size for d in v.tensor_shape.dim])
                       for k, v in sig.inputs.items()},
            "outputs": {k: (v.dtype, [d.size for d in v.tensor_shape.dim])
                        for k, v in sig.outputs.items()},
        }
        status_req = get_model_status_pb2.GetModelStatusRequest()
        status_req.model_spec.name = "digits"
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_req, 30)
        out["status"] = [(s.version, s.state, s.status.error_code)
                         for s in status.model_version_status]
        for name, spec in (("model", "nope"), ("version", "digits")):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = spec
            if name == "version":
                req.model_spec.version.value = 9
            req.inputs["pixels"].CopyFrom(tf.make_tensor_proto(job["pixels"]))
            try:
                stub.Predict(req, 30)
            except grpc.RpcError as exc:
                out["errors"][name] = exc.code().name
    sys.stdout.buffer.write(pickle.dumps(out))
    """
)


@pytest.mark.slow
def test_official_tf_serving_stubs_on_the_grpc_port(
    gateway: compat_gateway.CompatGateway,
    pixels: np.ndarray,
    v2_logits: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    script = tmp_path / "official_client.py"
    script.write_text(OFFICIAL_CLIENT)
    job = {"address": gateway.grpc_address, "variants": VARIANTS, "pixels": pixels}
    done = subprocess.run(
        [sys.executable, str(script)],
        input=pickle.dumps(job),
        capture_output=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    out: dict[str, Any] = pickle.loads(done.stdout)
    for variant in VARIANTS:
        np.testing.assert_array_equal(out["predict"][variant], v2_logits[variant])
        np.testing.assert_array_equal(
            np.array(out["float_val"][variant], np.float32), v2_logits[variant].reshape(-1)
        )
        assert out["spec"][variant] == ("digits", 1, "serving_default")
    assert out["zeros"].shape == (2, 10) and (out["zeros"][0] == out["zeros"][1]).all()
    assert out["metadata"] == {
        "version": 1,
        "method": "tensorflow/serving/predict",
        "inputs": {"pixels": (1, [-1, 64])},  # DT_FLOAT
        "outputs": {"logits": (1, [-1, 10])},
    }
    assert out["status"] == [(1, 30, 0)]  # AVAILABLE, OK
    assert out["errors"] == {"model": "NOT_FOUND", "version": "NOT_FOUND"}
