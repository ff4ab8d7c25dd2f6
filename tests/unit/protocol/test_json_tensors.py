"""JSON tensor data: each datatype takes exactly the JSON Triton takes, fast path or not."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.protocol import json_tensors
from gateway.tensors import DATATYPES
from tests.strategies import EXTREME_NUMBERS, json_values, nested

INTS = {name: np.iinfo(DATATYPES[name].dtype) for name in DATATYPES if name[:3] in ("INT", "UIN")}
FLOATS = ("FP16", "BF16", "FP32", "FP64")


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "expected"),
    [
        ("FP32", (3,), [1, 2.5, -0.0], [1.0, 2.5, -0.0]),
        ("FP32", (1,), [10**19], [1e19]),
        ("FP64", (2,), [1e308, -1e308], [1e308, -1e308]),
        ("FP16", (2,), [0.5, 65504], [0.5, 65504]),
        ("BF16", (1,), [1.5], [1.5]),
        ("INT32", (2,), [-(2**31), 2**31 - 1], [-(2**31), 2**31 - 1]),
        ("UINT64", (2,), [2**64 - 1, 0], [2**64 - 1, 0]),
        ("INT8", (2, 2), [[1, -2], [3, 4]], [[1, -2], [3, 4]]),
        ("FP32", (2, 2), [1, 2, 3, 4], [[1, 2], [3, 4]]),  # flat data for a 2-d shape
        ("BOOL", (2,), [True, False], [True, False]),
        ("BYTES", (2, 1), [["a"], ["é"]], [[b"a"], ["é".encode()]]),
        ("FP32", (0,), [], []),
        ("INT8", (1, 0), [[]], np.zeros((1, 0))),
    ],
)  # fmt: skip
def test_accepted(datatype: str, shape: tuple[int, ...], data: Any, expected: Any) -> None:
    out = json_tensors.decode("x", datatype, shape, data)
    assert out.shape == shape
    assert out.dtype == DATATYPES[datatype].dtype
    assert out.tolist() == np.asarray(expected, dtype=out.dtype).tolist()


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP32", (2,), [1.5, True], "FP32 data must be JSON numbers"),
        ("FP32", (2,), [1.5, "1.5"], "FP32 data must be JSON numbers"),
        ("FP32", (2,), [1.5, None], "FP32 data must be JSON numbers"),
        ("FP32", (1,), [{}], "FP32 data must be JSON numbers"),
        ("FP32", (2, 2), [[0, 1], [1, False]], "FP32 data must be JSON numbers"),
        ("FP32", (1,), [1e308], "outside the FP32 range"),
        ("FP16", (1,), [70000], "outside the FP16 range"),
        ("BF16", (1,), [1e39], "outside the BF16 range"),
        ("INT32", (1,), [1.7], "INT32 data must be JSON integers in the INT32 range"),
        ("INT32", (1,), [2.0], "INT32 data must be JSON integers"),  # rapidjson: not IsInt
        ("INT32", (1,), [2**31], "in the INT32 range"),
        ("UINT8", (1,), [300], "in the UINT8 range"),
        ("UINT8", (1,), [-1], "in the UINT8 range"),
        ("INT64", (1,), [2**63], "in the INT64 range"),
        ("UINT64", (2,), [2**63, -1], "in the UINT64 range"),
        ("INT8", (2,), [1, True], "INT8 data must be JSON integers"),
        ("BOOL", (2,), [True, 1], "BOOL data must be JSON true or false"),
        ("BOOL", (1,), ["true"], "BOOL data must be JSON true or false"),
        ("BYTES", (2,), ["a", 1], "BYTES data must be JSON strings"),
        ("BYTES", (1,), [None], "BYTES data must be JSON strings"),
        ("FP32", (2, 1), [[1], [2, 3]], "lists of equal lengths"),
        ("FP32", (2, 1), [[1], 2], "lists of equal lengths"),
        ("BYTES", (2, 1), [["a"], ["b", "c"]], "lists of equal lengths"),
        ("FP32", (4,), [[1, 2], [3, 4]], "nests deeper than the shape's 1 dims"),
        ("BYTES", (2,), [["a"], ["b"]], "nests deeper than the shape's 1 dims"),
        ("FP32", (2,), [1, [2]], "FP32 data must be JSON numbers"),
        ("FP32", (2,), [1.0], "1 elements in data for shape [2] (2 elements)"),
        ("FP32", (1,), 1.0, "data must be a list"),
        ("FP32", (1,), nested(1000), "nests deeper than the shape's 1 dims"),
        ("BYTES", (1, 1), nested(1000, "s"), "nests deeper than the shape's 2 dims"),
    ],
)  # fmt: skip
def test_refused(datatype: str, shape: tuple[int, ...], data: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)) as info:
        json_tensors.decode("x", datatype, shape, data)
    assert info.value.message.startswith("input 'x': ")


def _triton_accepts(datatype: str, value: Any) -> bool:
    """The rule, element by element, as plainly as it can be written (the reference)."""
    if datatype == "BOOL":
        return type(value) is bool
    if datatype == "BYTES":
        return type(value) is str
    if datatype in FLOATS:
        return type(value) in (int, float)
    info = INTS[datatype]
    return type(value) is int and info.min <= value <= info.max


def _in_range(datatype: str, values: list[Any]) -> bool:
    """Whether numbers fit the datatype's floats without becoming inf."""
    if datatype not in FLOATS or datatype == "FP64":
        return True
    limit = {"FP16": 65504.0, "BF16": 3.3895313892515355e38, "FP32": 3.4028234663852886e38}
    return all(abs(float(v)) <= limit[datatype] * (1 + 2**-8) for v in values)


elements = st.one_of(
    st.booleans(),
    st.none(),
    st.sampled_from(EXTREME_NUMBERS),
    st.integers(-300, 300),
    st.floats(-1e3, 1e3),
    st.sampled_from([0, 1, 0.0, 1.0]),  # where a bool hides best
    st.text(max_size=3),
)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(list(DATATYPES)),
    st.lists(elements, min_size=1, max_size=8),
    st.integers(1, 600),
    st.sampled_from([1, 2, 3]),
    st.none() | st.tuples(elements, st.floats(0, 1)),
)
def test_decode_agrees_with_the_element_rule(
    datatype: str,
    values: list[Any],
    length: int,
    rows: int,
    intruder: tuple[Any, float] | None,
) -> None:
    # A few values repeated to a few hundred elements, as real data repeats its kinds,
    # and maybe one intruder anywhere: a lone bool among many numbers, among many 0s and
    # 1s, or in one row of nested data.
    n = max(rows, length // rows * rows)
    data = (values * n)[:n]
    if intruder is not None:
        data[int(intruder[1] * (n - 1))] = intruder[0]
    width = len(data) // rows
    doc = [data[r * width : (r + 1) * width] for r in range(rows)] if rows > 1 else data
    shape = (rows, width) if rows > 1 else (len(data),)
    accepted = all(_triton_accepts(datatype, v) for v in data) and _in_range(datatype, data)
    try:
        out = json_tensors.decode("x", datatype, shape, doc)
    except BadRequest:
        assert not accepted
        return
    assert accepted
    flat = out.reshape(-1).tolist()
    if datatype == "BYTES":
        assert flat == [v.encode() for v in data]
    elif datatype in INTS or datatype == "BOOL":
        assert flat == data
    else:
        expected = np.asarray(data, dtype=np.float64).astype(DATATYPES[datatype].dtype)
        assert flat == expected.tolist()


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(list(DATATYPES)), json_values, st.lists(st.integers(0, 3), max_size=3))
def test_any_json_is_an_array_or_a_bad_request(datatype: str, data: Any, shape: list[int]) -> None:
    try:
        out = json_tensors.decode("x", datatype, tuple(shape), data)
    except BadRequest:
        return
    assert out.shape == tuple(shape)
    assert out.dtype == DATATYPES[datatype].dtype


def test_many_zeros_and_ones_still_find_the_one_bool() -> None:
    flat: list[Any] = [0.0, 1.0] * 50_000
    flat[77_777] = False
    with pytest.raises(BadRequest, match="FP32 data must be JSON numbers"):
        json_tensors.decode("x", "FP32", (len(flat),), flat)
    rows: list[list[Any]] = [[0] * 224 for _ in range(300)]
    rows[299][223] = True
    with pytest.raises(BadRequest, match="INT64 data must be JSON integers"):
        json_tensors.decode("x", "INT64", (300, 224), rows)
    rows[299][223] = 1
    assert json_tensors.decode("x", "INT64", (300, 224), rows).sum() == 1
