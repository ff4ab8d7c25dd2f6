"""Leaf: the statistics extension's counters, from the gateway's own timing.

Triton's `v2/models/stats` shape (extension_statistics.md), kept per model, version and
variant: requests that succeeded or failed with their end-to-end time; time queued in the
batcher; per runner call (an execution) the time to stack the batch (compute_input), the
runner call (compute_infer) and the split back (compute_output), also by batch size.
`inference_count` counts rows, `execution_count` runner calls. Durations are cumulative
nanoseconds with their count, as Triton reports them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def doc(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VariantStats:
    """One (model, version, variant)'s counters."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, BatchStats] = field(default_factory=dict)

    def merge(self, other: VariantStats) -> None:
        for name in _DURATIONS:
            mine, theirs = getattr(self, name), getattr(other, name)
            mine.count += theirs.count
            mine.ns += theirs.ns
        self.inference_count += other.inference_count
        self.execution_count += other.execution_count
        self.last_inference_ms = max(self.last_inference_ms, other.last_inference_ms)
        for size, b in other.batches.items():
            mine_b = self.batches.setdefault(size, BatchStats())
            for name in ("compute_input", "compute_infer", "compute_output"):
                d, o = getattr(mine_b, name), getattr(b, name)
                d.count += o.count
                d.ns += o.ns

    def doc(self, name: str, version: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {k: getattr(self, k).doc() for k in _DURATIONS}
            | {"cache_hit": Duration().doc(), "cache_miss": Duration().doc()},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": b.compute_input.doc(),
                    "compute_infer": b.compute_infer.doc(),
                    "compute_output": b.compute_output.doc(),
                }
                for size, b in sorted(self.batches.items())
            ],
        }


Key = tuple[str, str, str]  # model, version, variant


class Statistics:
    """Every variant's counters; the dataplane and the batchers record, the front ends read."""

    def __init__(self) -> None:
        self._stats: dict[Key, VariantStats] = {}

    def of(self, model: str, version: str, variant: str) -> VariantStats:
        key = (model, version, variant)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = VariantStats()
        return stats

    def request(self, key: Key, ok: bool, seconds: float) -> None:
        """One client request answered (end to end in the gateway)."""
        stats = self.of(*key)
        (stats.success if ok else stats.fail).add(seconds)
        if ok:
            stats.last_inference_ms = int(time.time() * 1000)

    def execution(
        self,
        key: Key,
        rows: int,
        queued: Iterable[float],
        compute_input_s: float,
        compute_infer_s: float,
        compute_output_s: float,
    ) -> None:
        """One runner call of `rows` rows, for requests that queued `queued` seconds each."""
        stats = self.of(*key)
        waits = list(queued)
        n = len(waits)
        # Per request, as Triton counts them: each member spent the batch's compute time.
        stats.queue.add(sum(waits), n)
        stats.compute_input.add(compute_input_s * n, n)
        stats.compute_infer.add(compute_infer_s * n, n)
        stats.compute_output.add(compute_output_s * n, n)
        stats.inference_count += rows
        stats.execution_count += 1
        batch = stats.batches.setdefault(rows, BatchStats())
        batch.compute_input.add(compute_input_s)
        batch.compute_infer.add(compute_infer_s)
        batch.compute_output.add(compute_output_s)

    def report(
        self, model: str | None = None, version: str = "", variant: str | None = None
    ) -> list[dict[str, Any]]:
        """Triton's model_stats list: per model and version (every variant summed), named
        `model`; with `variant`, that variant's alone, named `model@variant`. No model:
        every model, then every variant on its own."""
        groups: dict[tuple[str, str], VariantStats] = {}
        for (m, v, var), stats in sorted(self._stats.items()):
            if (model is not None and m != model) or (version and v != version):
                continue
            if variant is not None and var != variant:
                continue
            name = f"{m}@{var}" if variant is not None else m
            groups.setdefault((name, v), VariantStats()).merge(stats)
            if model is None:
                groups.setdefault((f"{m}@{var}", v), VariantStats()).merge(stats)
        return [s.doc(name, v) for (name, v), s in sorted(groups.items())]
