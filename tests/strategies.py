"""Hypothesis strategies: tensors of every v2 datatype, and hostile v2 requests.

The hostile half feeds the property tests that hold the decoders (unit level) and the
running gateway (tests/reliability) to "any input gives a result or a 4xx, never more".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
import orjson
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gateway.protocol import json_tensors, v2_http_client
from gateway.protocol.pb import v2_pb2 as pb
from gateway.tensors import DATATYPES, InferRequest, Tensor, as_bytes_array

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


def input_entry(t: Tensor) -> dict[str, Any]:
    """A tensor as a v2 JSON request input, data included."""
    data = json_tensors.encode(t)
    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
            "data": data if isinstance(data, list) else data.tolist()}  # fmt: skip


@st.composite
def request_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid v2 JSON request document: inputs with data, maybe id, outputs, parameters."""
    ts = draw(st.lists(tensors(JSON_EXACT, small_shapes), min_size=1, max_size=3))
    doc: dict[str, Any] = {
        "inputs": [
            input_entry(Tensor(f"{t.name}{i}", t.datatype, t.data)) for i, t in enumerate(ts)
        ]
    }
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        doc["outputs"] = [{"name": "y", "parameters": {"binary_data": draw(st.booleans())}}]
    if draw(st.booleans()):
        doc["parameters"] = {"binary_data_output": draw(st.booleans()), "timeout": 5_000_000}
    return doc


def _places(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: the root, object members, the first list elements."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _places(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _places(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A document from `base` with one to three places replaced by any JSON value,
    removed, or given an extra member or element: every field at every depth."""
    doc = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(_places(doc)))
        action = draw(st.sampled_from(["replace", "replace", "drop", "grow"]))
        if not place:
            doc = draw(json_values) if action == "replace" else doc
            continue
        parent = doc
        for key in place[:-1]:
            parent = parent[key]
        key = place[-1]
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "drop":
            del parent[key]
        elif isinstance(parent[key], dict):
            parent[key][draw(st.text(max_size=8))] = draw(json_values)
        elif isinstance(parent[key], list):
            parent[key].append(draw(json_values))
    return doc


@st.composite
def binary_bodies(
    draw: st.DrawFn, requests: st.SearchStrategy[InferRequest]
) -> tuple[bytes, int | None]:
    """A binary-extension body for a request from `requests`, and its header length, then
    maybe broken: a binary_data_size changed, blobs cut or padded, the length off."""
    body, length = v2_http_client.encode_request(draw(requests), binary=True)
    assert length is not None
    header, blobs = orjson.loads(body[:length]), body[length:]
    if draw(st.booleans()):
        params = draw(st.sampled_from(header["inputs"]))["parameters"]
        size = params["binary_data_size"]
        params["binary_data_size"] = draw(
            st.sampled_from(EXTREME_NUMBERS) | st.integers(-3, 3).map(lambda d: size + d)
        )
    if draw(st.booleans()):
        blobs = blobs[: draw(st.integers(0, len(blobs)))] + draw(st.binary(max_size=8))
    head = json_body(header)
    length = len(head) + draw(st.sampled_from([0, 0, 0, -1, 1, -len(head) - 1, 2**31]))
    return head + blobs, draw(st.sampled_from([length, length, length, 0, None]))


def requests_of(ts: st.SearchStrategy[list[Tensor]]) -> st.SearchStrategy[InferRequest]:
    """InferRequests for model "m" whose inputs (given unique names) come from `ts`."""
    return ts.map(
        lambda items: InferRequest(
            "m", tuple(Tensor(f"{t.name}{i}", t.datatype, t.data) for i, t in enumerate(items))
        )
    )


# ---- hostile gRPC: any ModelInferRequest, and any bytes ----

PB_CONTENTS: dict[str, st.SearchStrategy[list[Any]]] = {
    "bool_contents": st.lists(st.booleans(), max_size=6),
    "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
    "int64_contents": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6),
    "uint_contents": st.lists(st.integers(0, 2**32 - 1), max_size=6),
    "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=6),
    "fp32_contents": st.lists(st.floats(width=32), max_size=6),
    "fp64_contents": st.lists(st.floats(), max_size=6),
    "bytes_contents": st.lists(st.binary(max_size=6), max_size=6),
}
PB_PARAMS: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("bool_param", st.booleans()),
    ("int64_param", st.integers(-(2**63), 2**63 - 1)),
    ("string_param", st.text(max_size=8)),
    ("double_param", st.floats()),
    ("uint64_param", st.integers(0, 2**64 - 1)),
]
pb_dims = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, 2, 64, -1, 2**31, 2**40, 2**62])
pb_shapes = st.lists(pb_dims, max_size=4) | st.lists(st.integers(0, 3), max_size=40)


@st.composite
def _fill_params(draw: st.DrawFn, into: Any, names: st.SearchStrategy[str]) -> None:
    for key in draw(st.lists(names, max_size=3)):
        field, values = draw(st.sampled_from(PB_PARAMS))
        setattr(into[key], field, draw(values))


_param_names = st.sampled_from(["binary_data", "binary_data_size", "timeout", "variant"]) | st.text(
    max_size=6
)


@st.composite
def model_infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Any ModelInferRequest: odd datatypes, shapes with huge or negative dims, typed
    contents of any field and length, raw contents of any size and count, any parameters."""
    msg = pb.ModelInferRequest(model_name=draw(st.text(max_size=8)), id=draw(st.text(max_size=8)))
    draw(_fill_params(msg.parameters, _param_names))
    datatypes = st.sampled_from(list(DATATYPES)) | st.text(max_size=6)
    for i in range(draw(st.integers(0, 3))):
        t = msg.inputs.add(name=f"x{i}", datatype=draw(datatypes), shape=draw(pb_shapes))
        draw(_fill_params(t.parameters, _param_names))
        if draw(st.booleans()):
            # Often the datatype's own field with a shape that fits its values, so typed
            # contents get past the count check to the conversion itself.
            own = getattr(DATATYPES.get(t.datatype), "contents_field", None)
            fits = own is not None and draw(st.booleans())
            field = own if fits else draw(st.sampled_from(list(PB_CONTENTS)))
            values = draw(PB_CONTENTS[field])
            getattr(t.contents, field).extend(values)
            if fits:
                del t.shape[:]
                t.shape.append(len(values))
    if draw(st.booleans()):
        sized = [_raw_size(t) for t in msg.inputs]
        sizes = st.sampled_from([s for s in sized if s is not None] or [0]) | st.integers(0, 40)
        count = draw(st.sampled_from([len(msg.inputs), len(msg.inputs), 0, 1, 2]))
        msg.raw_input_contents.extend(draw(st.binary(min_size=n, max_size=n)) for n in
                                      [draw(sizes) for _ in range(count)])  # fmt: skip
    for name in draw(st.lists(st.text(max_size=4), max_size=2)):
        draw(_fill_params(msg.outputs.add(name=name).parameters, _param_names))
    return msg


def _raw_size(t: pb.ModelInferRequest.InferInputTensor) -> int | None:
    """The right raw byte count for `t`, where it is small enough to send."""
    dt = DATATYPES.get(t.datatype)
    n = 1
    for d in t.shape:
        n *= d
    if dt is None or dt.itemsize == 0 or not 0 <= n * dt.itemsize <= 4096:
        return None
    return n * dt.itemsize


@st.composite
def grpc_wire_bytes(draw: st.DrawFn, messages: st.SearchStrategy[Any]) -> bytes:
    """Bytes as a gRPC front end receives them: a message, serialized and then maybe cut,
    with bytes flipped or inserted; or bytes of no message at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    wire = bytearray(draw(messages).SerializeToString())
    for _ in range(draw(st.integers(0, 3))):
        if not wire:
            break
        at = draw(st.integers(0, len(wire) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip":
            wire[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del wire[at:]
        else:
            wire[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(wire)
