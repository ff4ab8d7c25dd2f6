"""TensorFlow exporter: the network as a SavedModel in TF Serving's layout.

TF Serving loads `<model>/<version>/saved_model.pb`, and our version folders are that
layout, so the SavedModel's files go straight into the version folder. The graph is
built natively in TensorFlow from the reference weights; its `serving_default`
signature takes and returns the model.yaml names with a free batch dimension.
TensorFlow on the CPU has no NCHW convolution, so the graph transposes the NCHW input
to NHWC once and the convolution weights are stored HWIO.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from gateway.config import ModelConfig
from model_repo.builders.networks import MLP, Conv, ResNet

SIGNATURE = "serving_default"
# A rebuilt artifact further than this from the reference logits is refused.
TOLERANCE = {"digits": 1e-4, "resnet": 1e-3}


class _MLP(tf.Module):
    def __init__(self, net: MLP) -> None:
        super().__init__(name="mlp")
        self.layers = [
            (
                tf.Variable(w, name=f"w{i}", trainable=False),
                tf.Variable(b, name=f"b{i}", trainable=False),
            )
            for i, (w, b) in enumerate(net.layers)
        ]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = tf.matmul(h, w) + b
            if i < len(self.layers) - 1:
                h = tf.nn.relu(h)
        return h


class _ResNet(tf.Module):
    def __init__(self, net: ResNet) -> None:
        super().__init__(name="resnet")
        self.blocks = net.blocks()
        self.convs = {name: _conv_vars(name, c) for name, c in net.convs.items()}
        self.meta = {name: (c.stride, c.pad) for name, c in net.convs.items()}
        self.fc_w = tf.Variable(net.fc_w, name="fc_w", trainable=False)
        self.fc_b = tf.Variable(net.fc_b, name="fc_b", trainable=False)

    def _conv(self, name: str, x: tf.Tensor) -> tf.Tensor:
        w, b = self.convs[name]
        stride, pad = self.meta[name]
        # Explicit symmetric padding: "SAME" pads bottom/right only at stride 2.
        padding = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
        return tf.nn.conv2d(x, w, strides=stride, padding=padding) + b

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        h = tf.transpose(x, [0, 2, 3, 1])  # NCHW -> NHWC
        h = tf.nn.relu(self._conv("stem", h))
        h = tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
        h = tf.nn.max_pool2d(h, ksize=3, strides=2, padding="VALID")
        for prefix, down in self.blocks:
            y = tf.nn.relu(self._conv(f"{prefix}c1", h))
            y = self._conv(f"{prefix}c2", y)
            shortcut = self._conv(f"{prefix}down", h) if down else h
            h = tf.nn.relu(y + shortcut)
        pooled = tf.reduce_mean(h, axis=[1, 2])
        return tf.matmul(pooled, self.fc_w) + self.fc_b


def _conv_vars(name: str, c: Conv) -> tuple[tf.Variable, tf.Variable]:
    hwio = np.ascontiguousarray(c.w.transpose(2, 3, 1, 0))  # [out, in, k, k] -> [k, k, in, out]
    return (
        tf.Variable(hwio, name=f"{name}.w", trainable=False),
        tf.Variable(c.b, name=f"{name}.b", trainable=False),
    )


def _servable(
    network: MLP | ResNet, model: ModelConfig
) -> tuple[tf.Module, tf.types.experimental.ConcreteFunction]:
    (inp,) = model.signature.inputs
    (outp,) = model.signature.outputs
    module = _ResNet(network) if isinstance(network, ResNet) else _MLP(network)
    shape = [None if d == -1 else d for d in inp.shape]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name=inp.name)])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {outp.name: tf.identity(module(x), name=outp.name)}

    return module, serve.get_concrete_function()


def export(network: MLP | ResNet, model: ModelConfig, out: Path) -> None:
    """Writes the SavedModel into `out`'s folder; `out` (saved_model.pb) is written last."""
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    module, fn = _servable(network, model)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tf-export-") as tmp:
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: fn})
        _check(Path(tmp), network, model, folder)
        # Everything but saved_model.pb first, so a half-written export never looks built.
        for entry in sorted(Path(tmp).iterdir()):
            if entry.name == out.name:
                continue
            target = folder / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        os.replace(Path(tmp) / "saved_model.pb", out)


def _check(saved: Path, network: MLP | ResNet, model: ModelConfig, folder: Path) -> None:
    """Reloads the SavedModel and holds it to the reference logits of samples.npz."""
    samples = folder / "samples.npz"
    if not samples.exists():
        return
    (inp,) = model.signature.inputs
    (outp,) = model.signature.outputs
    fn = tf.saved_model.load(str(saved)).signatures[SIGNATURE]
    with np.load(samples) as f:
        inputs, expected = f["inputs"], f["logits"]
    got = np.concatenate(
        [fn(**{inp.name: tf.constant(inputs[i : i + 64])})[outp.name].numpy()
         for i in range(0, len(inputs), 64)]
    )  # fmt: skip
    diff = float(np.max(np.abs(got - expected)))
    limit = TOLERANCE["resnet" if isinstance(network, ResNet) else "digits"]
    print(f"{model.name}: tensorflow max |diff| vs reference logits = {diff:.2e}")
    if diff > limit:
        raise RuntimeError(f"{model.name}: SavedModel differs from the reference by {diff:.2e}")
