"""TensorFlow source: a SavedModel folder's `serving_default` signature.

The signature is what TF Serving serves, so its keys are the served names as they are.
To ONNX with tf2onnx (`from_function` over the loaded signature, opset 17).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from model_repo.importer.onnx_form import OPSET
from model_repo.importer.signature import Signature, datatype, make_specs
from model_repo.importer.sources import Arrays, SourceError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

SIGNATURE = "serving_default"


def _shape(spec: Any) -> tuple[int, ...] | None:
    if spec.shape.rank is None:
        return None
    return tuple(-1 if d is None else int(d) for d in spec.shape.as_list())


class SavedModelSource:
    kind = "savedmodel"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded = tf.saved_model.load(str(path))
        signatures = dict(self.loaded.signatures)
        if SIGNATURE not in signatures:
            raise SourceError(
                f"{path}: no '{SIGNATURE}' signature (has {sorted(signatures)}); TF Serving "
                "serves that one by default"
            )
        self.fn = signatures[SIGNATURE]

    def signature(self) -> Signature:
        _, kwargs = self.fn.structured_input_signature
        outs = self.fn.structured_outputs
        if not isinstance(outs, dict):
            raise SourceError(f"{self.path}: '{SIGNATURE}' does not return a dict of tensors")
        ins = [(k, datatype(v.dtype.as_numpy_dtype), _shape(v)) for k, v in kwargs.items()]
        return Signature(
            make_specs(ins, "input"),
            make_specs([(k, datatype(v.dtype.as_numpy_dtype), _shape(v)) for k, v in outs.items()],
                       "output"),
        )  # fmt: skip

    def run(self, sig: Signature, inputs: Arrays) -> list[np.ndarray]:
        result = self.fn(**{s.source_name: tf.constant(inputs[s.name]) for s in sig.inputs})
        return [result[s.source_name].numpy() for s in sig.outputs]

    def to_onnx(self, sig: Signature, inputs: Arrays) -> tuple[onnx.ModelProto, list[str]]:
        """(model, its output names in signature order): tf2onnx flattens the output dict."""
        import tf2onnx

        specs = [
            tf.TensorSpec([None if d == -1 else d for d in s.shape], s.dtype, name=s.name)
            for s in sig.inputs
        ]
        keys = [s.source_name for s in sig.inputs]
        fn = self.fn

        @tf.function(input_signature=specs)
        def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
            out = fn(**dict(zip(keys, args, strict=True)))
            return {s.name: tf.identity(out[s.source_name], name=s.name) for s in sig.outputs}

        model, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=OPSET)
        # tf.nest flattens a dict in sorted key order: that is the graph's output order.
        order = sorted(s.name for s in sig.outputs)
        names = [o.name for o in model.graph.output]
        by_key = dict(zip(order, names, strict=True))
        return model, [by_key[s.name] for s in sig.outputs]
