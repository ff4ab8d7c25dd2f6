"""Router: variant selection from a client's pin or the model's default.

A client pins a variant three ways (all equal): the `variant` request parameter, the
`servegate-variant` HTTP header / gRPC metadata, or the model-name alias
`<model>@<variant>` for tools that only take a model name.
"""

from __future__ import annotations

from gateway.config import ModelConfig
from gateway.errors import BadRequest, ModelNotFound

ALIAS_SEP = "@"
PIN_PARAMETER = "variant"
PIN_HEADER = "servegate-variant"


def split_alias(model_name: str) -> tuple[str, str | None]:
    """`digits@onnx` -> ("digits", "onnx"); `digits` -> ("digits", None)."""
    model, sep, variant = model_name.partition(ALIAS_SEP)
    return model, (variant if sep else None)


def pin(model: ModelConfig, *pins: str | None) -> str | None:
    """The variant the client pinned (all pins given must agree), or None when it pinned
    none and the model's routing policy decides."""
    given = {p for p in pins if p}
    if len(given) > 1:
        raise BadRequest(f"conflicting variant pins {sorted(given)}")
    if not given:
        return None
    (variant,) = given
    if variant not in model.variants:
        raise ModelNotFound(
            f"model '{model.name}' has no variant '{variant}' (variants: {sorted(model.variants)})"
        )
    return variant


def choose(model: ModelConfig, *pins: str | None) -> str:
    """The pinned variant (all pins given must agree), else the model's default."""
    pinned = pin(model, *pins)
    return pinned if pinned is not None else model.routing.default
