"""The StableHLO -> ONNX translator, op by op: each JAX function is exported with a
symbolic batch dim, translated, and run by ONNX Runtime at two batch sizes against
`exported.call`. No TensorFlow or torch here."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
from jax import lax

from model_repo.importer.signature import Signature, Spec
from model_repo.importer.source_jax import flat
from model_repo.importer.stablehlo_onnx import Unsupported, to_onnx

rng = np.random.default_rng(0)
W = rng.normal(0, 0.3, (6, 4)).astype(np.float32)
K_NHWC = rng.normal(0, 0.3, (3, 3, 1, 6)).astype(np.float32)  # HWIO, depthwise: 6 groups


def depthwise_nhwc(x: jax.Array) -> jax.Array:  # x [b, 6, 8, 8] NCHW in, NHWC inside
    y = jnp.transpose(x, (0, 2, 3, 1))
    y = lax.conv_general_dilated(
        y, K_NHWC, (2, 2), ((1, 2), (1, 2)), rhs_dilation=(1, 1),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6,
    )  # fmt: skip
    pooled = lax.reduce_window(y, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")
    return jax.nn.sigmoid(pooled.reshape(pooled.shape[0], -1))


def shapes_and_math(x: jax.Array) -> jax.Array:  # x [b, 6, 8, 8]
    h = x.mean(axis=(2, 3))  # [b, 6]
    e = jnp.einsum("bi,bj->bij", h, h).sum(axis=2)  # dot_general with a batch dim
    z = jnp.concatenate([e[:, :3], jnp.pad(h[:, 3:], ((0, 0), (1, 0)))], axis=1)  # [b, 7]
    z = jnp.where(z > 0, jnp.log1p(jnp.abs(z)), jnp.expm1(z)) * lax.rsqrt(1.0 + z * z)
    z = jnp.clip(z, -0.5, 0.5) + jnp.arange(7, dtype=jnp.float32) / 10
    return jax.nn.softmax(z[:, :6] @ W + jnp.max(x, axis=(1, 2, 3))[:, None], axis=1)


def two_outputs(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = jnp.tanh(x.reshape(x.shape[0], -1))
    return h.min(axis=1), jnp.exp(-(h**2)).sum(axis=1)


CASES: dict[str, Callable[..., object]] = {
    "depthwise_nhwc": depthwise_nhwc,
    "shapes_and_math": shapes_and_math,
    "two_outputs": two_outputs,
}


def exported(fn: Callable[..., object]) -> jax.export.Exported:
    spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 6, 8, 8"), np.float32)
    return flat(jax.export.export(jax.jit(fn), platforms=("cpu", "cuda"))(spec))


def signature(ex: jax.export.Exported) -> Signature:
    outs = tuple(
        Spec(f"y{i}", "FP32", tuple(-1 if not isinstance(d, int) else d for d in a.shape))
        for i, a in enumerate(ex.out_avals)
    )
    return Signature((Spec("x", "FP32", (-1, 6, 8, 8)),), outs)


@pytest.mark.parametrize("case", list(CASES))
def test_translation_matches_jax(case: str) -> None:
    ex = exported(CASES[case])
    model = to_onnx(ex, signature(ex))
    assert not [n.op_type for n in model.graph.node if n.op_type == "Shape"]  # batch stays symbolic
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for rows in (1, 5):
        x = np.random.default_rng(rows).normal(size=(rows, 6, 8, 8)).astype(np.float32)
        expected = [np.asarray(o) for o in ex.call(x)]
        got = session.run(None, {"x": x})
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_an_op_it_lacks_is_named() -> None:
    ex = exported(lambda x: jnp.sort(x.reshape(x.shape[0], -1), axis=1))
    with pytest.raises(Unsupported, match=r"^stablehlo\.sort$"):
        to_onnx(ex, signature(ex))
