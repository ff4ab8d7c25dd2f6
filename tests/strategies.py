"""Hypothesis strategies for tensors of every v2 datatype the gateway accepts."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gateway.tensors import DATATYPES, Tensor, as_bytes_array

NUMERIC = [name for name in DATATYPES if name not in ("BYTES", "BF16")]
# JSON carries numbers; FP16/BF16 become float32 there, so exact JSON round trips skip them.
JSON_EXACT = [name for name in NUMERIC if name != "FP16"] + ["BYTES"]

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn, datatype: str) -> np.ndarray:
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
def tensors(draw: st.DrawFn, datatypes: list[str] | None = None) -> Tensor:
    datatype = draw(st.sampled_from(datatypes or list(DATATYPES)))
    name = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
    return Tensor(name, datatype, draw(arrays(datatype)))


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
