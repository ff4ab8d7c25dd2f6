"""Load tests: what a load-test user sends and how it judges the answer (no locust, no I/O).

Inputs are real: the held-out samples a model's builder wrote (`<version>/samples.npz`,
keys `inputs`, `labels`, `logits`) or any `.npz` with an `inputs` array. Each request is
a batch of consecutive sample rows, cycling. An answer must have the output's shape and,
where the expected class of a row is known, that class as its argmax: a wrong answer is
a failure, as a 5xx is.

Only rows whose reference logits already predict their label are kept, so a server that
computes the model correctly never fails the check (the digits MLP is ~97 % accurate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.config import Repository

MAX_DISTINCT_BATCHES = 64


@dataclass(frozen=True)
class Workload:
    """One model's request batches and the expected answer of each."""

    model: str
    input_name: str
    output_name: str | None  # None: take the first output the server returns
    output_tail: tuple[int, ...] | None  # the output's shape after the batch dim, if known
    batches: tuple[np.ndarray, ...]
    expected: tuple[np.ndarray | None, ...]  # per batch: expected class of each row

    @property
    def batch_size(self) -> int:
        return int(self.batches[0].shape[0])

    def check(self, index: int, outputs: Mapping[str, np.ndarray]) -> str | None:
        """None when the answer to batch `index` is right, else what is wrong with it."""
        if not outputs:
            return "the answer has no outputs"
        name = self.output_name if self.output_name is not None else next(iter(outputs))
        out = outputs.get(name)
        if out is None:
            return f"output {name!r} missing (got {sorted(outputs)})"
        size = self.batch_size
        if out.ndim < 1 or out.shape[0] != size:
            return f"output {name!r} has shape {list(out.shape)} for a batch of {size}"
        if self.output_tail is not None and tuple(out.shape[1:]) != self.output_tail:
            want = [size, *self.output_tail]
            return f"output {name!r} has shape {list(out.shape)}, expected {want}"
        expected = self.expected[index]
        if expected is None:
            return None
        got = out.reshape(size, -1).argmax(axis=1)
        wrong = np.flatnonzero(got != expected)
        if wrong.size:
            i = int(wrong[0])
            return (
                f"wrong class in {wrong.size}/{size} rows "
                f"(row {i}: {got[i]}, expected {expected[i]})"
            )
        return None


def make_batches(
    inputs: np.ndarray, classes: np.ndarray | None, batch_size: int
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray | None, ...]]:
    """Consecutive rows, wrapping around, in at most MAX_DISTINCT_BATCHES distinct batches."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    n = int(inputs.shape[0])
    if n == 0:
        raise ValueError("no input samples")
    count = max(1, min(MAX_DISTINCT_BATCHES, -(-n // batch_size)))
    batches, expected = [], []
    for k in range(count):
        rows = (np.arange(batch_size) + k * batch_size) % n
        batches.append(np.ascontiguousarray(inputs[rows]))
        expected.append(None if classes is None else classes[rows])
    return tuple(batches), tuple(expected)


def expected_classes(
    labels: np.ndarray | None, logits: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray]:
    """(class per row or None, mask of rows to keep): rows the reference gets right."""
    if labels is None and logits is None:
        return None, np.ones(0, dtype=bool)
    if logits is None:
        assert labels is not None
        return labels.astype(np.int64), np.ones(len(labels), dtype=bool)
    predicted = logits.reshape(len(logits), -1).argmax(axis=1)
    if labels is None:
        return predicted, np.ones(len(predicted), dtype=bool)
    return labels.astype(np.int64), predicted == labels


def load_samples(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(inputs, expected class per row or None) from a samples .npz."""
    with np.load(path) as f:
        if "inputs" not in f:
            raise ValueError(f"{path}: no 'inputs' array (keys: {sorted(f.keys())})")
        inputs = f["inputs"]
        labels = f.get("labels")
        logits = f.get("logits")
    classes, keep = expected_classes(labels, logits)
    if classes is None:
        return inputs, None
    if not keep.any():
        raise ValueError(f"{path}: the reference logits get no sample right")
    return inputs[keep], classes[keep]


def build(
    model: str,
    batch_size: int,
    *,
    repository: Repository | None,
    samples: Path | None = None,
    input_name: str | None = None,
    check_classes: bool = True,
) -> Workload:
    """The workload for `model`: samples and signature from the repository unless given."""
    config = repository.get(model) if repository is not None else None
    if samples is None:
        if config is None or repository is None:
            raise ValueError(f"model {model!r} is not in the repository: pass --inputs FILE.npz")
        samples = repository.version_folder(model) / "samples.npz"
    inputs, classes = load_samples(samples)
    output_name, tail = None, None
    if config is not None:
        spec = config.signature.inputs[0]
        input_name = input_name or spec.name
        out = config.signature.outputs[0]
        output_name = out.name
        tail = tuple(out.shape[1:]) if all(d >= 0 for d in out.shape[1:]) else None
    if input_name is None:
        raise ValueError(f"model {model!r} is not in the repository: pass --input-name")
    batches, expected = make_batches(inputs, classes if check_classes else None, batch_size)
    return Workload(model, input_name, output_name, tail, batches, expected)
