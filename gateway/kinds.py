"""Leaf: the runner kinds, one registry entry each.

Everything the gateway knows about a kind of runner lives in its entry: the wire protocol
its backend client speaks, the platform name model metadata shows, how `servegate up`
launches it locally and probes its health, how long it may take to start, and which
request parameters its runner reads. Adding a kind that runs as `python -m MODULE` (a
runner host around a new engine) is one entry here and the engine; adding one with a new
kind of server process also needs that launcher in gateway/supervisor/launchers.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Launch = Literal["module", "torchserve"]
"""How a kind starts locally: `python -m <module>` with the runner command line
(runners/host.py), or the real TorchServe (gateway/supervisor/torchserve.py)."""

Probe = Literal["grpc-health", "torchserve-workers", "tfserving-status"]
"""How its liveness is read: grpc.health.v1, TorchServe's management API (a READY
worker per model), or TF Serving's ModelService (a version AVAILABLE per model)."""


@dataclass(frozen=True, slots=True)
class RunnerKind:
    """One kind of runner: what model.yaml's `runner:` names."""

    name: str
    protocol: str
    """The wire protocol of its backend client: v2, torchserve or tfserving."""
    platform: str
    """Model metadata's platform (Triton's `<project>_<format>` names where one exists)."""
    launch: Launch | None
    """How `servegate up` starts it; None: never local (an external server)."""
    probe: Probe = "grpc-health"
    module: str = ""
    """For launch "module": the Python module run as the runner."""
    binary: str = ""
    """A server program preferred over `module` when it is on PATH (it then probes as
    "tfserving-status")."""
    framed: bool = False
    """It also serves the framed v2 protocol on a Unix socket (the gateway's cheap hop)."""
    start_timeout_s: float = 60.0
    """Seconds from spawn to ready before a start counts as failed."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment its runner starts with."""
    cache_env: str = ""
    """An environment variable naming a folder where its runner keeps compiled programs
    across restarts (JAX's persistent compilation cache): a restart skips recompiling."""
    parameters: frozenset[str] | None = frozenset()
    """Request parameters its runner reads: only these are forwarded (and part of the
    batch key); None: all of them (an external v2 server may read any)."""
    description: str = ""


KINDS: Mapping[str, RunnerKind] = {
    k.name: k
    for k in (
        RunnerKind(
            "onnx", "v2", "onnx_onnxv1", "module", module="runners.onnx", framed=True,
            start_timeout_s=30.0, description="servegate onnx runner (ONNX Runtime)",
        ),
        RunnerKind(
            "jax", "v2", "jax_export", "module", module="runners.jax", framed=True,
            cache_env="JAX_COMPILATION_CACHE_DIR",
            env={  # cache every compiled bucket, however small or quick
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            },
            description="servegate jax runner (jax.export)",
        ),
        # tensorflow_model_server when PATH has it (containers), else our tf runner: the
        # same PredictionService gRPC API over the same SavedModels.
        RunnerKind(
            "tfserving", "tfserving", "tensorflow_savedmodel", "module",
            module="runners.tensorflow", binary="tensorflow_model_server",
            description="servegate tf runner (TF Serving API)",
        ),
        RunnerKind(
            "torchserve", "torchserve", "pytorch_torchscript", "torchserve",
            probe="torchserve-workers", start_timeout_s=120.0, description="TorchServe",
        ),
        RunnerKind("v2", "v2", "v2", None, parameters=None, description="external v2 server"),
    )
}  # fmt: skip
