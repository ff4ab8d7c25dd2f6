"""Protocol: Triton's model configuration extension, derived from model.yaml (pure).

`GET v2/models/{m}[/versions/{v}]/config` and gRPC `ModelConfig` answer in the shape of
Triton's ModelConfig (model_config.proto), because Triton's tools read it before they do
anything: perf_analyzer stops with "failed to get model config" without it. With gateway
batching on (and every tensor batched on dim 0), `max_batch_size` is its
`max_batch_size` and the dims leave the batch dim out, as Triton's do; `dynamic_batching`
carries the batcher's delay. The platform is the serving variant's.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from gateway.config import ModelConfig, TensorSpec
from gateway.protocol.pb import v2_pb2 as pb

# v2 datatype -> Triton's DataType enum name (BYTES is TYPE_STRING there)
DATA_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16", "BF16": "TYPE_BF16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}  # fmt: skip


def max_batch_size(model: ModelConfig) -> int:
    """Triton's max_batch_size: the batcher's, when every tensor has a leading -1 dim."""
    if model.batching is None:
        return 0
    specs = (*model.signature.inputs, *model.signature.outputs)
    return model.batching.max_batch_size if all(s.shape[:1] == (-1,) for s in specs) else 0


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return list(spec.shape[1:] if batched else spec.shape)


def model_config(model: ModelConfig, name: str, variant: str) -> dict[str, Any]:
    """The Triton-shaped configuration of `model` as served by `variant`, named `name`
    (the name the client asked for: `digits` or `digits@jax`)."""
    mbs = max_batch_size(model)
    v = model.variants[variant]
    doc: dict[str, Any] = {
        "name": name,
        "platform": v.kind.platform,
        "backend": v.runner,
        "version_policy": {"specific": {"versions": [int(x) for x in model.versions]}},
        "max_batch_size": mbs,
        "input": [
            {
                "name": s.name,
                "data_type": DATA_TYPES[s.datatype],
                "format": "FORMAT_NONE",
                "dims": _dims(s, mbs > 0),
            }
            for s in model.signature.inputs
        ],
        "output": [
            {"name": s.name, "data_type": DATA_TYPES[s.datatype], "dims": _dims(s, mbs > 0)}
            for s in model.signature.outputs
        ],
        "instance_group": [{"name": f"{model.name}@{variant}", "count": 1, "kind": "KIND_MODEL"}],
        "parameters": {"servegate_variant": {"string_value": variant}},
    }
    if model.batching is not None and mbs > 0:
        doc["dynamic_batching"] = {
            "max_queue_delay_microseconds": int(model.batching.max_delay_ms * 1000),
            "preserve_ordering": True,
        }
    return doc


def to_pb(doc: dict[str, Any]) -> pb.ModelConfig:
    """The same configuration as the ModelConfig message gRPC's ModelConfig answers."""
    return json_format.ParseDict(doc, pb.ModelConfig())
