"""JAX exporter: the network as jnp functions, saved as one `jax.export` artifact (model.jax).

The weights are closed over, so they are baked into the StableHLO as constants. Free
dimensions (-1 in the signature) become symbolic, with every leading -1 sharing the one
batch symbol `b`, so one artifact serves every batch size; `platforms=('cpu', 'cuda')`
makes the same file run on either. Matmuls and convolutions ask for HIGHEST precision:
on GPUs JAX's default would use TF32 and miss the parity tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

from gateway.config import ModelConfig, TensorSpec
from gateway.tensors import DATATYPES
from model_repo.builders.networks import MLP, Conv, ResNet

PLATFORMS = ("cpu", "cuda")
HIGHEST = lax.Precision.HIGHEST

Fn = Callable[[jax.Array], jax.Array]


def mlp_fn(net: MLP) -> Fn:
    """Dense layers with ReLU between them."""
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in net.layers]

    def forward(x: jax.Array) -> jax.Array:
        h = x
        for i, (w, b) in enumerate(layers):
            h = jnp.dot(h, w, precision=HIGHEST) + b
            if i < len(layers) - 1:
                h = jax.nn.relu(h)
        return h

    return forward


def _conv(x: jax.Array, c: Conv) -> jax.Array:
    y = lax.conv_general_dilated(
        x,
        jnp.asarray(c.w),
        window_strides=(c.stride, c.stride),
        padding=((c.pad, c.pad), (c.pad, c.pad)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=HIGHEST,
    )
    return y + jnp.asarray(c.b)[None, :, None, None]


def _maxpool3x3s2(x: jax.Array) -> jax.Array:
    pooled: jax.Array = lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 1, 3, 3), (1, 1, 2, 2), ((0, 0), (0, 0), (1, 1), (1, 1))
    )
    return pooled


def resnet_fn(net: ResNet) -> Fn:
    """The forward pass of networks.ResNet (stem, max pool, 8 basic blocks, GAP, fc)."""

    def forward(x: jax.Array) -> jax.Array:
        h = _maxpool3x3s2(jax.nn.relu(_conv(x, net.convs["stem"])))
        for prefix, down in net.blocks():
            y = jax.nn.relu(_conv(h, net.convs[f"{prefix}c1"]))
            y = _conv(y, net.convs[f"{prefix}c2"])
            shortcut = _conv(h, net.convs[f"{prefix}down"]) if down else h
            h = jax.nn.relu(y + shortcut)
        pooled = jnp.mean(h, axis=(2, 3))
        return jnp.dot(pooled, jnp.asarray(net.fc_w), precision=HIGHEST) + jnp.asarray(net.fc_b)

    return forward


def symbolic_spec(spec: TensorSpec, index: int, scope: jax.export.SymbolicScope) -> object:
    """A ShapeDtypeStruct for one input: a leading -1 is the shared batch `b`."""
    dims = [
        ("b" if j == 0 else f"d{index}_{j}") if d == -1 else str(d)
        for j, d in enumerate(spec.shape)
    ]
    shape = jax.export.symbolic_shape(", ".join(dims), scope=scope)
    dtype = DATATYPES[spec.datatype].dtype.newbyteorder("=")
    return jax.ShapeDtypeStruct(shape, dtype)  # type: ignore[no-untyped-call]


def export_network(network: MLP | ResNet, model: ModelConfig) -> jax.export.Exported:
    """The exported function: signature inputs in order -> tuple of signature outputs."""
    (inp,) = model.signature.inputs
    (_,) = model.signature.outputs
    forward = resnet_fn(network) if isinstance(network, ResNet) else mlp_fn(network)

    def serve(x: jax.Array) -> tuple[jax.Array, ...]:
        return (forward(x),)

    scope = jax.export.SymbolicScope()
    return jax.export.export(jax.jit(serve), platforms=PLATFORMS)(symbolic_spec(inp, 0, scope))


def export(network: MLP | ResNet, model: ModelConfig, out: Path) -> None:
    """Writes `out` (model.jax): the serialized export, weights included."""
    exported = export_network(network, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(exported.serialize())
    tmp.replace(out)
