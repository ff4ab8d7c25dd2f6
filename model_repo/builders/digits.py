"""The `digits` model: an MLP trained on scikit-learn's digits set (8x8 images, values 0..16).

Fixed split and seed, so every build gives the same weights and the same accuracy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_repo.builders.networks import MLP

SEED = 0
TEST_FRACTION = 0.25
HIDDEN = (128, 64)
SAMPLES_FILE = "samples.npz"
BUILD_FILE = "build.json"


@dataclass(frozen=True)
class Trained:
    network: MLP
    accuracy: float
    x_test: np.ndarray
    y_test: np.ndarray


def train() -> Trained:
    """Trains the MLP; test accuracy is on the held-out quarter of the data."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=400, random_state=SEED)
    clf.fit(x_train, y_train)
    network = MLP(
        tuple(
            (w.astype(np.float32), b.astype(np.float32))
            for w, b in zip(clf.coefs_, clf.intercepts_, strict=True)
        )
    )
    predicted = network.forward(x_test).argmax(axis=1)
    accuracy = float((predicted == y_test).mean())
    return Trained(network, accuracy, x_test, y_test.astype(np.int64))


def write(trained: Trained, version_dir: Path) -> dict[str, float | int]:
    """Reference weights, the held-out samples with reference logits, and the build record."""
    version_dir.mkdir(parents=True, exist_ok=True)
    trained.network.save(version_dir)
    np.savez(
        version_dir / SAMPLES_FILE,
        inputs=trained.x_test,
        labels=trained.y_test,
        logits=trained.network.forward(trained.x_test),
    )
    record = {"test_accuracy": trained.accuracy, "test_samples": len(trained.y_test)}
    (version_dir / BUILD_FILE).write_text(json.dumps(record, indent=2))
    return record
