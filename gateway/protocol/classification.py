"""Protocol: the classification extension, and the parameters of a requested output.

A requested output may carry `binary_data` (the binary extension: send it as raw bytes)
and `classification: N` (Triton's classification extension): instead of the tensor, the N
largest values of each row as BYTES `"<value>:<index>"`, shape [batch, N], best first.
Both front ends read the parameters here, so they mean the same on HTTP and gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gateway.errors import BadRequest
from gateway.tensors import ParamValue, RequestedOutput, Tensor


def requested_output(name: str, params: Mapping[str, ParamValue]) -> RequestedOutput:
    """A requested output from its parameters; BadRequest for ones of the wrong type."""
    binary = params.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise BadRequest(f"output '{name}': binary_data must be a boolean")
    top = params.get("classification", 0)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise BadRequest(f"output '{name}': classification must be a non-negative integer")
    return RequestedOutput(name, binary, top)


def classify(tensor: Tensor, top: int) -> Tensor:
    """`tensor`'s `top` largest values per row (the last dim), as "value:index" BYTES."""
    if tensor.datatype in ("BYTES", "BOOL") or not tensor.shape:
        raise BadRequest(f"output '{tensor.name}': classification needs a numeric tensor")
    scores = tensor.data.reshape(tensor.shape[0] if len(tensor.shape) > 1 else 1, -1)
    k = min(top, scores.shape[1])
    best = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
    labels = np.empty(best.shape, dtype=object)
    for row, indices in enumerate(best):
        for col, index in enumerate(indices):
            labels[row, col] = f"{scores[row, index]:f}:{index}".encode()
    return Tensor(tensor.name, "BYTES", labels)
