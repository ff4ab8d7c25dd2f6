"""Triton's model configuration, derived from model.yaml: what perf_analyzer reads."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format

from gateway.config import DEFAULT_REPOSITORY, load_model
from gateway.protocol.model_config import model_config, to_pb


def test_a_batched_model_has_its_batch_size_and_dims_without_the_batch_dim() -> None:
    digits = load_model(DEFAULT_REPOSITORY / "digits")
    doc = model_config(digits, "digits@jax", "jax")
    assert doc["name"] == "digits@jax" and doc["platform"] == "jax_export"
    assert doc["max_batch_size"] == 32
    assert doc["input"] == [
        {"name": "pixels", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [64]}
    ]
    assert doc["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]
    assert doc["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert doc["version_policy"] == {"specific": {"versions": [1]}}


def test_without_batching_the_dims_are_whole_and_max_batch_size_is_0(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "model.yaml").write_text(
        "signature:\n"
        "  inputs: [{name: text, datatype: BYTES, shape: [-1]}]\n"
        "  outputs: [{name: score, datatype: FP64, shape: [2, 3]}]\n"
        "routing: {default: a}\n"
        "variants: {a: {runner: onnx, artifact: m.onnx}}\n"
    )
    doc = model_config(load_model(folder), "plain", "a")
    assert doc["max_batch_size"] == 0 and "dynamic_batching" not in doc
    assert doc["input"][0]["dims"] == [-1] and doc["input"][0]["data_type"] == "TYPE_STRING"
    assert doc["output"][0]["dims"] == [2, 3] and doc["platform"] == "onnx_onnxv1"


def test_the_grpc_message_carries_the_same_configuration() -> None:
    digits = load_model(DEFAULT_REPOSITORY / "digits")
    doc = model_config(digits, "digits", "onnx")
    msg = to_pb(doc)
    assert msg.max_batch_size == 32 and list(msg.input[0].dims) == [64]
    assert msg.WhichOneof("scheduling_choice") == "dynamic_batching"
    back = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    assert back["name"] == "digits" and back["input"][0]["data_type"] == "TYPE_FP32"
