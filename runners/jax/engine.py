"""JAX engine: a `jax.export` artifact compiled per bucketed input shape, GPU when present.

The artifact (model.jax, built by model_repo/builders/export_jax.py) holds the function
with a symbolic batch dimension for both `cpu` and `cuda`. The device is the first of
`jax.devices()` whose platform the artifact was exported for: JAX lists a GPU first when
one works, and forcing JAX_PLATFORMS=cuda where none exists dies with a bare assertion.
Each compiled shape is an ahead-of-time `Compiled` held in a bounded LRU (batching.py),
so memory stays bounded however many batch sizes clients send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gateway.config import ModelConfig, VariantConfig
from gateway.errors import BadRequest
from runners.host import Predict
from runners.jax.batching import BucketPolicy, LRUCache, run_bucketed

log = logging.getLogger("servegate.runner.jax")

ShapeKey = tuple[tuple[tuple[int, ...], str], ...]

# jax.Device.platform -> the lowering platform name that jax.export uses
_LOWERING = {"gpu": "cuda"}


def pick_device(platforms: Sequence[str]) -> jax.Device:
    """The first device JAX offers that the artifact was exported for, else the CPU."""
    for device in jax.devices():
        if _LOWERING.get(device.platform, device.platform) in platforms:
            return device
    return jax.devices("cpu")[0]


class CompiledModel:
    """One deserialized export: compiles per shape on first use, bucketing the batch dim."""

    def __init__(
        self,
        model: ModelConfig,
        exported: jax.export.Exported,
        device: jax.Device,
        policy: BucketPolicy,
    ) -> None:
        sig = model.signature
        self.name = model.name
        self.exported = exported
        self.device = device
        self.policy = policy
        self.input_names = [s.name for s in sig.inputs]
        self.output_names = [s.name for s in sig.outputs]
        self.dtypes = [np.dtype(a.dtype) for a in exported.in_avals]
        # Bucketing needs every input and output to lead with the free batch dim.
        self.bucketed = all(s.shape[:1] == (-1,) for s in (*sig.inputs, *sig.outputs))
        self.cache: LRUCache[ShapeKey, Any] = LRUCache(policy.cache_size)
        self.compile_seconds: dict[ShapeKey, float] = {}
        self._lock = threading.Lock()
        self._jitted = jax.jit(exported.call)
        self._fixed = [tuple(s.shape[1:]) for s in sig.inputs]

    def warm(self) -> None:
        """Compiles the policy's prewarm buckets now (only where all other dims are fixed)."""
        if not self.bucketed or any(-1 in dims for dims in self._fixed):
            if self.policy.prewarm:
                log.warning("%s: free non-batch dims; prewarm skipped", self.name)
            return
        for rows in self.policy.prewarm:
            key = tuple(
                ((rows, *dims), dt.str) for dims, dt in zip(self._fixed, self.dtypes, strict=True)
            )
            self._compiled(key)

    def _compiled(self, key: ShapeKey) -> Any:
        with self._lock:
            compiled, _ = self.cache.get_or_create(key, lambda: self._compile(key))
            return compiled

    def _compile(self, key: ShapeKey) -> Any:
        t0 = time.perf_counter()
        sharding = jax.sharding.SingleDeviceSharding(self.device)
        args = [
            jax.ShapeDtypeStruct(shape, np.dtype(dt), sharding=sharding)  # type: ignore[no-untyped-call]
            for shape, dt in key
        ]
        compiled = self._jitted.lower(*args).compile()
        # JAX's own tracing/lowering caches keep every lowered module alive (weights
        # included: ~140 MB a shape for resnet18), which would defeat the bound on
        # `cache`. The Compiled objects we hold stay valid; clearing only costs a re-trace.
        jax.clear_caches()
        took = time.perf_counter() - t0
        self.compile_seconds[key] = took
        log.info("%s: compiled %s in %.0f ms", self.name, [s for s, _ in key], took * 1e3)
        return compiled

    def _call(self, arrays: Sequence[np.ndarray]) -> Sequence[Any]:
        key = tuple((a.shape, a.dtype.str) for a in arrays)
        outs = self._compiled(key)(*arrays)
        return [np.asarray(o) for o in outs]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        arrays = [
            np.asarray(inputs[n], dtype=dt)
            for n, dt in zip(self.input_names, self.dtypes, strict=True)
        ]
        if not self.bucketed:
            outs = self._call(arrays)
        else:
            rows = {a.shape[0] for a in arrays}
            if len(rows) != 1:
                raise BadRequest(f"inputs disagree on the batch size: {sorted(rows)}")
            outs = run_bucketed(arrays, self.policy.buckets, self._call)
        return dict(zip(self.output_names, outs, strict=True))


class JaxEngine:
    kind = "jax"
    platform = "jax_export"

    def __init__(self) -> None:
        self._device: jax.Device | None = None
        self.models: dict[str, CompiledModel] = {}

    def load(self, model: ModelConfig, variant: VariantConfig, artifact: Path) -> Predict:
        policy = BucketPolicy.from_settings(variant.settings)
        exported = jax.export.deserialize(bytearray(artifact.read_bytes()))
        if len(exported.in_avals) != len(model.signature.inputs):
            raise ValueError(
                f"{artifact}: {len(exported.in_avals)} inputs, the signature has "
                f"{len(model.signature.inputs)}"
            )
        self._device = pick_device(exported.platforms)
        compiled = CompiledModel(model, exported, self._device, policy)
        t0 = time.perf_counter()
        compiled.warm()
        if policy.prewarm:
            log.info(
                "%s: prewarmed buckets %s in %.2f s",
                model.name,
                list(policy.prewarm),
                time.perf_counter() - t0,
            )
        self.models[str(artifact)] = compiled
        return compiled.predict

    def device(self) -> str:
        if self._device is None:
            return "cpu"
        return "cuda" if self._device.platform in ("gpu", "cuda") else self._device.platform
