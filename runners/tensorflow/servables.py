"""tf runner: the SavedModels it serves, found in TF Serving's layout, and their lookup.

A model version is `<repository>/<model>/<version>/saved_model.pb` (our version folders
are TF Serving's layout). Lookups fail with TF Serving's own status codes and words,
so a client cannot tell this process from `tensorflow_model_server`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import model_pb2

from gateway.config import load_repository
from gateway.errors import GatewayError

RUNNER_KIND = "tfserving"
DEFAULT_SIGNATURE = "serving_default"

log = logging.getLogger("servegate.tf_runner")


class ServingError(GatewayError):
    """A failed call, with the gRPC status TF Serving answers for it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = self.grpc_code = code


def dtype_name(dtype: int) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT -> "float"."""
    return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()


@dataclass(frozen=True)
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: Path
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    functions: Mapping[str, Callable[..., Mapping[str, Any]]]

    def signature(self, key: str) -> tuple[meta_graph_pb2.SignatureDef, Callable[..., Any]]:
        key = key or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self.functions:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        return self.signature_defs[key], self.functions[key]

    def run(self, key: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a signature; TensorFlow's own errors keep their status code."""
        _, fn = self.signature(key)
        try:
            result = fn(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            raise ServingError(
                _GRPC_CODES.get(exc.error_code, grpc.StatusCode.UNKNOWN), exc.message
            ) from None
        return {k: v.numpy() for k, v in result.items()}


_GRPC_CODES: Mapping[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def load_servable(name: str, version: int, folder: Path) -> Servable:
    """Loads one SavedModel folder and warms each serving signature with one zero row."""
    proto = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
    meta = next(
        (m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags), proto.meta_graphs[0]
    )
    loaded = tf.saved_model.load(str(folder), tags=["serve"])
    functions = dict(loaded.signatures)
    servable = Servable(name, version, folder, dict(meta.signature_def), functions)
    for key in functions:
        _warm(servable, key)
    return servable


def _warm(servable: Servable, key: str) -> None:
    sig, _ = servable.signature(key)
    inputs = {}
    for k, info in sig.inputs.items():
        shape = [1 if d.size == -1 else d.size for d in info.tensor_shape.dim]
        if info.dtype == types_pb2.DT_STRING:
            return  # nothing sensible to warm a string signature with
        inputs[k] = np.zeros(shape, dtype=tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
    servable.run(key, inputs)


class Servables:
    """Every loaded (model, version); lookups as TF Serving's ServerCore answers them."""

    def __init__(self, servables: list[Servable]) -> None:
        self._by_name: dict[str, dict[int, Servable]] = {}
        for s in servables:
            self._by_name.setdefault(s.name, {})[s.version] = s

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def names(self) -> list[str]:
        return sorted(f"{n} v{v}" for n, vs in self._by_name.items() for v in vs)

    def find(self, spec: model_pb2.ModelSpec) -> Servable:
        """The servable a ModelSpec asks for: a version, or the latest."""
        if spec.WhichOneof("version_choice") == "version_label":
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized servable version label: {spec.version_label}",
            )
        versions = self._by_name.get(spec.name, {})
        if spec.HasField("version"):
            found = versions.get(spec.version.value)
            request = f"Specific({spec.name}, {spec.version.value})"
        else:
            found = versions[max(versions)] if versions else None
            request = f"Latest({spec.name})"
        if found is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}"
            )
        return found

    def versions(self, spec: model_pb2.ModelSpec) -> list[Servable]:
        """For GetModelStatus: every version, or the one asked for."""
        versions = self._by_name.get(spec.name)
        if not versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
            )
        if spec.HasField("version"):
            if spec.version.value not in versions:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec.version.value} of model {spec.name}",
                )
            return [versions[spec.version.value]]
        return [versions[v] for v in sorted(versions)]


def load_all(repository: Path) -> Servables:
    """Every built version of every model with a local tfserving variant."""
    loaded = []
    for a in load_repository(repository).built_artifacts(RUNNER_KIND):
        t0 = time.perf_counter()
        loaded.append(load_servable(a.model.name, int(a.version), a.path.parent))
        log.info(
            "loaded %s v%s from %s in %.2f s (warm call included)",
            a.model.name, a.version, a.path.parent, time.perf_counter() - t0,
        )  # fmt: skip
    return Servables(loaded)
