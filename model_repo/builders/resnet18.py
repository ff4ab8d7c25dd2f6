"""The `resnet18` model: a ResNet-18-shaped CNN with seeded (not trained) weights.

Compute-bound (about 1.8 GFLOPs an image), so frameworks and GPUs differ on it. Its
logits mean nothing; what matters is that every variant computes the same ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model_repo.builders.networks import ResNet

SEED = 0
SAMPLE_COUNT = 8
SAMPLES_FILE = "samples.npz"
BUILD_FILE = "build.json"


def sample_images(count: int = SAMPLE_COUNT, seed: int = 1) -> np.ndarray:
    """Seeded images, normalised like ImageNet inputs (about zero mean, unit variance)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 1.0, (count, 3, 56, 56)).astype(np.float32)
    # Upsampled noise gives images with spatial structure, so logits differ per image.
    return np.repeat(np.repeat(base, 4, axis=2), 4, axis=3)


def write(version_dir: Path) -> tuple[ResNet, dict[str, float | int]]:
    """Seeded weights, sample images with their reference logits, and the build record."""
    version_dir.mkdir(parents=True, exist_ok=True)
    network = ResNet.seeded(SEED)
    network.save(version_dir)
    images = sample_images()
    logits = np.concatenate([network.forward(images[i : i + 2]) for i in range(0, len(images), 2)])
    np.savez(version_dir / SAMPLES_FILE, inputs=images, labels=logits.argmax(axis=1), logits=logits)
    record = {"seeded": 1, "seed": SEED, "test_samples": len(images)}
    (version_dir / BUILD_FILE).write_text(json.dumps(record, indent=2))
    return network, record
