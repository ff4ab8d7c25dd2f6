"""The test models, built here in each source format: a small CNN (conv, batch norm,
ReLU/GELU, max pool, flatten or global average pool, dense) and an MLP (dense, ReLU, tanh).

Each framework builds its own network natively with seeded weights, so every import
starts from a source that framework really wrote. Shapes: CNN NCHW [-1, 3, 16, 16]
(Keras: NHWC [-1, 16, 16, 3]) -> 10 logits; MLP [-1, 20] -> 5.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

CNN_SHAPE = (3, 16, 16)
MLP_IN, MLP_OUT = 20, 5


def torch_models() -> dict[str, object]:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16)
            self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(16 * 4 * 4, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.bn1(self.c1(image)))
            h = self.pool(nn.functional.gelu(self.bn2(self.c2(h))))
            # view(size(0), -1): the exporters compute this shape from the batch size
            return self.fc(h.view(h.size(0), -1)) + h.mean(dim=(1, 2, 3)).unsqueeze(1)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(MLP_IN, 32),
                nn.ReLU(),
                nn.Linear(32, 16),
                nn.Tanh(),
                nn.Linear(16, MLP_OUT),
            )

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.net(features)

    cnn = CNN()
    with torch.no_grad():
        for bn in (cnn.bn1, cnn.bn2):  # non-trivial running statistics
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return {"cnn": cnn.eval(), "mlp": MLP().eval()}


def example(kind: str) -> np.ndarray:
    shape = (4, *CNN_SHAPE) if kind == "cnn" else (4, MLP_IN)
    return np.random.default_rng(1).normal(size=shape).astype(np.float32)


def write_torch(folder: Path) -> dict[str, Path]:
    """TorchScript (.pt, scripted), torch.export programs (.pt2) and ONNX files."""
    import torch

    out: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, module in torch_models().items():
            x = torch.from_numpy(example(kind))
            out[f"{kind}.torchscript"] = folder / f"{kind}.pt"
            torch.jit.save(torch.jit.script(module), str(out[f"{kind}.torchscript"]))
            program = torch.export.export(
                module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)
            )
            out[f"{kind}.torch_export"] = folder / f"{kind}.pt2"
            torch.export.save(program, str(out[f"{kind}.torch_export"]))
            out[f"{kind}.onnx"] = folder / f"{kind}.onnx"
            name = "image" if kind == "cnn" else "features"
            torch.onnx.export(
                module, (x,), str(out[f"{kind}.onnx"]), dynamo=False, opset_version=17,
                input_names=[name], output_names=["logits"],
                dynamic_axes={name: {0: "batch"}, "logits": {0: "batch"}},
            )  # fmt: skip
    return out


def write_tensorflow(folder: Path) -> dict[str, Path]:
    """Keras 3 models exported as SavedModels (`model.export`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same")(image)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="gelu")(h)
    cnn = keras.Model(image, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))
    rng = np.random.default_rng(0)
    for layer in cnn.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.uniform(-0.5, 0.5, 8))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, 8))
    features = keras.Input((MLP_IN,), name="features")
    h = keras.layers.Dense(32, activation="relu")(features)
    h = keras.layers.Dense(16, activation="tanh")(h)
    mlp = keras.Model(features, keras.layers.Dense(MLP_OUT)(h))
    out = {}
    for kind, model in (("cnn", cnn), ("mlp", mlp)):
        out[f"{kind}.savedmodel"] = folder / f"{kind}_savedmodel"
        model.export(str(out[f"{kind}.savedmodel"]), verbose=False)
    return out


def jax_functions() -> dict[str, object]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    mean = rng.normal(0, 0.1, 8).astype(np.float32)
    var = rng.uniform(0.5, 2.0, 8).astype(np.float32)
    w2 = rng.normal(0, 0.3, (8, 10)).astype(np.float32)
    m1 = rng.normal(0, 0.3, (MLP_IN, 32)).astype(np.float32)
    m2 = rng.normal(0, 0.3, (32, MLP_OUT)).astype(np.float32)

    def cnn(x: jax.Array) -> jax.Array:
        y = lax.conv_general_dilated(
            x, w1, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        c = (slice(None), None, None)
        y = (y - mean[c]) / jnp.sqrt(var[c] + 1e-5) * gamma[c]
        y = lax.reduce_window(
            jax.nn.relu(y), -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"
        )
        return jnp.mean(jax.nn.gelu(y, approximate=False), axis=(2, 3)) @ w2

    def mlp(x: jax.Array) -> jax.Array:
        return jnp.tanh(jax.nn.relu(x @ m1)) @ m2

    def sorted_mlp(x: jax.Array) -> jax.Array:  # jnp.sort: stablehlo.sort, no ONNX path
        return jnp.sort(x, axis=1) @ m1

    return {"cnn": cnn, "mlp": mlp, "sorted": sorted_mlp}


def write_jax(folder: Path) -> dict[str, Path]:
    """Serialized jax.export artifacts with a symbolic batch dim, for cpu and cuda."""
    import jax

    out = {}
    for kind, fn in jax_functions().items():
        dims = ", ".join(map(str, CNN_SHAPE)) if kind == "cnn" else str(MLP_IN)
        spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"b, {dims}"), np.float32)
        exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda"))(spec)
        out[f"{kind}.jax_export"] = folder / f"{kind}.jax"
        out[f"{kind}.jax_export"].write_bytes(exported.serialize())
    return out
