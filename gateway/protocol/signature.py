"""Protocol: checks a request against the model's signature before it leaves the gateway.

Every error names the tensor at fault, so a client never has to guess; a request that
passes here cannot fail in a runner for its shape or datatype.
"""

from __future__ import annotations

from gateway.config import Signature
from gateway.errors import BadRequest
from gateway.tensors import InferRequest


def check(request: InferRequest, signature: Signature) -> None:
    """Raises BadRequest unless inputs and requested outputs match `signature` exactly."""
    seen: set[str] = set()
    batch: set[int] = set()
    for t in request.inputs:
        spec = signature.input(t.name)
        if spec is None:
            expected = [s.name for s in signature.inputs]
            raise BadRequest(f"unknown input '{t.name}' (the model takes {expected})")
        if t.name in seen:
            raise BadRequest(f"input '{t.name}' given more than once")
        seen.add(t.name)
        if t.datatype != spec.datatype:
            raise BadRequest(
                f"input '{t.name}': datatype {t.datatype}, the model expects {spec.datatype}"
            )
        shape = t.shape
        if len(shape) != len(spec.shape) or any(
            want != -1 and got != want for got, want in zip(shape, spec.shape, strict=True)
        ):
            raise BadRequest(
                f"input '{t.name}': shape {list(shape)} does not match the model's "
                f"{list(spec.shape)}"
            )
        if spec.shape[:1] == (-1,):
            batch.add(shape[0])
    missing = [s.name for s in signature.inputs if s.name not in seen]
    if missing:
        raise BadRequest(f"missing inputs {missing}")
    if len(batch) > 1:
        raise BadRequest(f"inputs disagree on the batch size: {sorted(batch)}")
    for o in request.outputs:
        if signature.output(o.name) is None:
            expected = [s.name for s in signature.outputs]
            raise BadRequest(f"unknown output '{o.name}' (the model has {expected})")
