"""Pins: the three ways agree or conflict; `pin` says whether the client pinned at all."""

from __future__ import annotations

import pytest

from gateway.config import Repository
from gateway.errors import BadRequest, ModelNotFound
from gateway.router import selection


def test_alias() -> None:
    assert selection.split_alias("digits@jax") == ("digits", "jax")
    assert selection.split_alias("digits") == ("digits", None)


def test_pin_and_choose(tiny_repo: Repository) -> None:
    model = tiny_repo["tiny"]
    assert selection.pin(model, None, "") is None
    assert selection.choose(model, None) == "a"
    assert selection.pin(model, "b", None, "b") == "b"
    assert selection.choose(model, "b") == "b"
    with pytest.raises(BadRequest, match="conflicting"):
        selection.pin(model, "a", "b")
    with pytest.raises(ModelNotFound, match="no variant 'z'"):
        selection.choose(model, "z")
