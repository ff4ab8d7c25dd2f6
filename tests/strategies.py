"""Hypothesis strategies: tensors of every v2 datatype, and hostile JSON values."""

from __future__ import annotations

import json
from dataclasses import dataclass

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gateway.tensors import DATATYPES, Tensor, as_bytes_array

NUMERIC = [name for name in DATATYPES if name not in ("BYTES", "BF16")]
# JSON carries numbers; FP16/BF16 become float32 there, so exact JSON round trips skip them.
JSON_EXACT = [name for name in NUMERIC if name != "FP16"] + ["BYTES"]

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)
small_shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3)


@st.composite
def arrays(
    draw: st.DrawFn, datatype: str, shapes: st.SearchStrategy[tuple[int, ...]] = shapes
) -> np.ndarray:
    shape = draw(shapes)
    if datatype == "BYTES":
        n = int(np.prod(shape))
        items = draw(st.lists(st.binary(max_size=12), min_size=n, max_size=n))
        return as_bytes_array(np.array(items, dtype=object).reshape(shape))
    if datatype == "BF16":
        floats = draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e3, 1e3, width=32)))
        return floats.astype(ml_dtypes.bfloat16)
    dtype = DATATYPES[datatype].dtype
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def tensors(
    draw: st.DrawFn,
    datatypes: list[str] | None = None,
    shapes: st.SearchStrategy[tuple[int, ...]] = shapes,
) -> Tensor:
    datatype = draw(st.sampled_from(datatypes or list(DATATYPES)))
    name = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
    return Tensor(name, datatype, draw(arrays(datatype, shapes)))


def assert_same(a: Tensor, b: Tensor) -> None:
    assert a.name == b.name
    assert a.datatype == b.datatype
    assert a.shape == b.shape
    if a.datatype == "BYTES":
        assert a.data.reshape(-1).tolist() == b.data.reshape(-1).tolist()
    else:
        np.testing.assert_array_equal(
            a.data.view(np.uint8) if a.data.size else a.data,
            np.ascontiguousarray(b.data).view(np.uint8) if b.data.size else b.data,
        )


# ---- hostile JSON: any value a client may put in any field ----

# Numbers at the extremes, and ones no 64-bit field holds (orjson reads 10**30 as a float).
EXTREME_NUMBERS = [
    0, -0.0, 1, -1, 1.7, 2.0, 1e308, -1e308, 5e-324, 2**31, 2**53 + 1,
    2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30),
]  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EXTREME_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),  # any unicode but lone surrogates, which neither JSON nor proto carry
)

json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


@dataclass(frozen=True)
class Deep:
    """`leaf` (JSON text) inside `depth` lists, for json_body to write out as text: no
    JSON encoder recurses 1000 deep."""

    depth: int
    leaf: str = "1.0"


def json_body(doc: object, *, ascii_only: bool = True) -> bytes:
    """A JSON document as bytes through the stdlib, so ints of any size survive (orjson
    refuses 10**30 on the way out); Deep values become their nested lists."""
    deep: list[Deep] = []

    def placeholder(value: object) -> str:
        if not isinstance(value, Deep):
            raise TypeError(type(value).__name__)
        deep.append(value)
        return f"<deep {len(deep) - 1}>"

    text = json.dumps(doc, ensure_ascii=ascii_only, allow_nan=False, default=placeholder)
    for i, d in enumerate(deep):
        text = text.replace(f'"<deep {i}>"', "[" * d.depth + d.leaf + "]" * d.depth)
    return text.encode()


def nested(depth: int, leaf: object = 1.0) -> object:
    """`leaf` inside `depth` lists, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value
