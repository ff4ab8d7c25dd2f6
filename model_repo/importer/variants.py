"""The four variants an import can produce, each in its runner's layout, and how each
produced artifact is run for the parity check (as its runner would run it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORDER = ("onnx", "jax", "tensorflow", "pytorch")
BATCHING = {"max_batch_size": 32, "max_delay_ms": 0, "max_queue": 256}


@dataclass(frozen=True)
class Variant:
    name: str
    runner: str
    artifact: str
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def as_yaml(self, batched: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"runner": self.runner, "artifact": self.artifact}
        settings = self.settings if batched or self.name != "jax" else {}
        if settings:
            entry["settings"] = dict(settings)
        return entry


VARIANTS = {
    "onnx": Variant("onnx", "onnx", "model.onnx"),
    "jax": Variant(
        "jax", "jax", "model.jax",
        {"batch_buckets": [1, 2, 4, 8, 16, 32], "prewarm": [1]},
        "Batch sizes are padded up to a bucket; each compiles on first use (1 at load).",
    ),
    "tensorflow": Variant(
        "tensorflow", "tfserving", "saved_model.pb",
        note="A SavedModel in TF Serving's layout: its files go straight into the version folder.",
    ),
    "pytorch": Variant(
        "pytorch", "torchserve", "model.mar", {"batch_size": 1},
        "TorchScript + our handler in a .mar, served by the real TorchServe.",
    ),
}  # fmt: skip


def parse(text: str | None) -> list[str]:
    """`--variants onnx,jax` -> the names in canonical order; ValueError for unknown ones."""
    if not text:
        return list(ORDER)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ORDER))
    if unknown or not names:
        raise ValueError(f"--variants: unknown {unknown}; choose from {', '.join(ORDER)}")
    return [n for n in ORDER if n in names]
