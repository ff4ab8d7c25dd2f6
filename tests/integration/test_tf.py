"""The `tensorflow` variant behind the real gateway: TF Serving's gRPC API over SavedModels.

The Supervisor starts kind "tfserving" (our tf runner here: no `tensorflow_model_server`
exists for this machine); the gateway runs in-process on port 0 with no other runner
behind it, so every answer came through the gateway's TF Serving client (which needs
no TensorFlow: TF lives only in the runner). Tolerances, FP32 against the float64
reference: digits 1e-4 absolute (about 8e-6 seen), resnet18 1e-4 absolute as well
(about 2e-6 seen on CPU; its logits reach about 5).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from gateway import client
from gateway.backends.tfserving import TFServingBackend
from gateway.config import Repository
from gateway.errors import Unavailable
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import TFServingStub
from gateway.supervisor import tfserving
from tests.live import RunningGateway, infer, logits, samples, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIGITS_ATOL = 1e-4
RESNET_ATOL = 1e-4


@pytest.fixture(scope="module")
def tf_runner(runners: Callable[[str], str]) -> str:
    return runners("tfserving")


@pytest.fixture(scope="module")
def tf_gateway(gateway_over: Callable[[str], RunningGateway]) -> RunningGateway:
    """A gateway whose only runner is the TF Serving one."""
    return gateway_over("tfserving")


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_digits_equal_the_reference_logits(
    tf_gateway: RunningGateway, repository: Repository, protocol: str
) -> None:
    ref = samples(repository, "digits")
    response = infer(tf_gateway, protocol, "digits@tensorflow", {"pixels": ref["inputs"]})
    assert response.parameters.get("variant") == "tensorflow"
    got = logits(response)
    assert got.shape == ref["logits"].shape == (450, 10)
    np.testing.assert_allclose(got, ref["logits"], rtol=0, atol=DIGITS_ATOL)


@pytest.mark.parametrize("protocol", ["binary", "grpc"])
def test_resnet18_equals_the_reference_logits(
    tf_gateway: RunningGateway, repository: Repository, protocol: str
) -> None:
    ref = samples(repository, "resnet18")
    got = logits(infer(tf_gateway, protocol, "resnet18@tensorflow", {"image": ref["inputs"]}))
    assert got.shape == (8, 1000)
    np.testing.assert_allclose(got, ref["logits"], rtol=0, atol=RESNET_ATOL)
    np.testing.assert_array_equal(got.argmax(axis=1), ref["labels"])


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_held_out_accuracy_equals_the_builders_figure(
    tf_gateway: RunningGateway, repository: Repository, protocol: str
) -> None:
    record = json.loads((repository.version_folder("digits") / "build.json").read_text())
    ref = samples(repository, "digits")
    x = ref["inputs"]
    chunks = [
        logits(infer(tf_gateway, protocol, "digits@tensorflow", {"pixels": x[i : i + 64]}))
        for i in range(0, len(x), 64)
    ]
    predicted = np.concatenate(chunks).argmax(axis=1)
    assert len(predicted) == record["test_samples"] == 450
    assert float((predicted == ref["labels"]).mean()) == record["test_accuracy"]


@pytest.mark.parametrize("model", ["digits", "resnet18"])
def test_runner_metadata_maps_to_the_gateways(
    tf_gateway: RunningGateway, tf_runner: str, model: str
) -> None:
    """The SavedModel's own serving_default signature is the model.yaml signature."""
    with httpx.Client(base_url=tf_gateway.http_url) as http:
        reply = http.get(f"/v2/models/{model}@tensorflow")
    assert reply.status_code == 200
    gateway_meta = reply.json()
    assert gateway_meta["platform"] == "tensorflow_savedmodel"
    (variant,) = [v for v in gateway_meta["variants"] if v["name"] == "tensorflow"]
    assert (variant["runner"], variant["protocol"], variant["state"]) == (
        "tfserving",
        "tfserving",
        "READY",
    )

    async def runner_meta() -> dict[str, object]:
        backend = TFServingBackend(model, tf_runner, model, max_message_bytes=1 << 20)
        try:
            return await backend.metadata()
        finally:
            await backend.aclose()

    meta = asyncio.run(runner_meta())
    assert meta["name"] == model and meta["versions"] == ["1"]
    assert meta["platform"] == gateway_meta["platform"]
    assert meta["inputs"] == gateway_meta["inputs"]
    assert meta["outputs"] == gateway_meta["outputs"]


def test_runner_answers_errors_in_tf_servings_words(tf_runner: str) -> None:
    async def calls() -> dict[str, tuple[grpc.StatusCode, str]]:
        async with grpc.aio.insecure_channel(tf_runner) as channel:
            stub = TFServingStub(channel)
            x = pb.TensorProto(
                dtype=pb.DT_FLOAT,
                tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=1)] * 2),
                float_val=[1.0],
            )
            doubles = pb.TensorProto(
                dtype=pb.DT_DOUBLE,
                tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=1)] * 2),
                double_val=[1.0],
            )
            wrong_version = pb.ModelSpec(name="digits")
            wrong_version.version.value = 7
            requests = {
                "model": (stub.Predict, pb.PredictRequest(model_spec=pb.ModelSpec(name="nope"))),
                "version": (stub.Predict, pb.PredictRequest(model_spec=wrong_version)),
                "signature": (
                    stub.Predict,
                    pb.PredictRequest(model_spec=pb.ModelSpec(name="digits", signature_name="x")),
                ),
                "input": (
                    stub.Predict,
                    pb.PredictRequest(model_spec=pb.ModelSpec(name="digits"), inputs={"x": x}),
                ),
                "dtype": (
                    stub.Predict,
                    pb.PredictRequest(
                        model_spec=pb.ModelSpec(name="digits"), inputs={"pixels": doubles}
                    ),
                ),
                "shape": (  # [1, 1] where the signature says [-1, 64]: TensorFlow refuses it
                    stub.Predict,
                    pb.PredictRequest(model_spec=pb.ModelSpec(name="digits"), inputs={"pixels": x}),
                ),
                "status": (
                    stub.GetModelStatus,
                    pb.GetModelStatusRequest(model_spec=pb.ModelSpec(name="nope")),
                ),
            }
            out = {}
            for key, (method, request) in requests.items():
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await method(request, timeout=10)
                out[key] = (err.value.code(), err.value.details())
            return out

    errors = asyncio.run(calls())
    code, details = errors.pop("shape")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Matrix size-incompatible: In[0]: [1,1], In[1]: [64,128]" in details
    assert errors == {
        "model": (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        "version": (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(digits, 7)",
        ),
        "signature": (
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "x" not found.',
        ),
        "input": (
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 1!=1 len({x}) != len({pixels}). "
            "Sent extra: {x}. Missing but required: {pixels}.",
        ),
        "dtype": (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but double is provided",
        ),
        "status": (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope"),
    }


def test_unknown_model_makes_the_client_unavailable(tf_runner: str) -> None:
    async def check() -> tuple[bool, bool, str]:
        known = TFServingBackend("d", tf_runner, "digits", max_message_bytes=1 << 20)
        unknown = TFServingBackend("n", tf_runner, "nope", max_message_bytes=1 << 20)
        try:
            request = client.make_request("nope", {"pixels": np.zeros((1, 64), np.float32)})
            with pytest.raises(Unavailable) as err:
                await unknown.infer(request, deadline=time.monotonic() + 10)
            return await known.ready(), await unknown.ready(), str(err.value)
        finally:
            await known.aclose()
            await unknown.aclose()

    assert asyncio.run(check()) == (
        True,
        False,
        "variant 'n': NOT_FOUND: Servable not found for request: Latest(nope)",
    )


# A stand-in for the real binary: takes its flags, serves through our tf runner.
FAKE_BINARY = """\
#!{python}
import os, re, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
config = open(args["model_config_file"]).read()
root = os.path.dirname(re.search(r'base_path: "([^"]+)"', config).group(1))
os.execv(sys.executable, [sys.executable, "-m", "runners.tensorflow", "--repository", root,
                          "--host", "127.0.0.1", "--port", args["port"]])
"""


def test_model_server_launcher_then_stop_gives_503_not_a_hang(
    repository: Repository, tmp_path: Path
) -> None:
    """The launcher's binary path (config file, chosen port, ModelService readiness), then
    the runner stopped under the gateway: 503 / UNAVAILABLE at once, not a timeout."""
    binary = tmp_path / "tensorflow_model_server"
    binary.write_text(FAKE_BINARY.format(python=sys.executable))
    binary.chmod(0o755)
    runner = tfserving.model_server(repository, tmp_path / "work", "127.0.0.1", str(binary))
    config = (tmp_path / "work" / "tfserving.models.config").read_text()
    for model in ("digits", "resnet18"):
        assert f'name: "{model}"' in config
        assert f'base_path: "{repository.folder(model).resolve()}"' in config
    assert config.count("model_version_policy { specific { versions: 1 } }") == 2

    runner.spawn()
    try:
        endpoint = asyncio.run(runner.wait_ready(60.0))
        gw = start_gateway(repository, {"tfserving": endpoint})
    except BaseException:
        runner.stop()
        raise
    try:
        x = samples(repository, "digits")["inputs"][:3]
        assert logits(infer(gw, "grpc", "digits@tensorflow", {"pixels": x})).shape == (3, 10)
        runner.stop()
        assert not runner.alive()
        # 503 / UNAVAILABLE, not 504 / DEADLINE_EXCEEDED: the dead channel failed the call.
        with (
            httpx.Client(base_url=gw.http_url, timeout=30) as http,
            pytest.raises(client.ClientError) as http_err,
        ):
            client.infer_http(http, "digits@tensorflow", {"pixels": x}, binary=True)
        with (
            grpc.insecure_channel(gw.grpc_address) as channel,
            pytest.raises(client.ClientError) as grpc_err,
        ):
            client.infer_grpc(channel, "digits@tensorflow", {"pixels": x})
        assert http_err.value.status == "503"
        assert grpc_err.value.status == "UNAVAILABLE"
    finally:
        gw.stop()
        runner.stop()
    assert not runner.alive()
