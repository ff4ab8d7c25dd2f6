"""Every source format, CNN and MLP: every variant produced and within tolerance of the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.config import Repository
from model_repo.importer.pipeline import Result
from tests.importer.conftest import MODELS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VARIANTS = ["onnx", "jax", "tensorflow", "pytorch"]


@pytest.mark.parametrize("name", MODELS)
def test_every_variant_kept_within_tolerance(
    name: str, imported: tuple[Path, dict[str, Result]]
) -> None:
    result = imported[1][name]
    table = {o.variant: o for o in result.outcomes}
    assert result.kept == VARIANTS, {o.variant: o.reason for o in result.outcomes}
    for outcome in table.values():
        c = outcome.comparison
        assert c is not None and c.ok
        assert c.max_abs <= 1e-5 + 1e-4 * 10  # the logits here stay below 10
        assert c.argmax_agreement == 1.0
        assert outcome.size_bytes > 0
    # The source's own framework serves the source as it is (reloaded, so at most rounding
    # apart). A .pt2 program is no TorchScript, which TorchServe needs: it is converted.
    own = [o for o in table.values() if o.converter == "source"]
    assert len(own) == (0 if name.endswith("torch_export") else 1)
    assert all(o.comparison is not None and o.comparison.max_abs < 1e-6 for o in own)


@pytest.mark.parametrize("name", MODELS)
def test_repository_entry_is_servable(name: str, imported_repository: Repository) -> None:
    model = imported_repository[name]
    folder = imported_repository.version_folder(name)
    assert model.versions == ("1",)
    assert {v: c.runner for v, c in model.variants.items()} == {
        "onnx": "onnx", "jax": "jax", "tensorflow": "tfserving", "pytorch": "torchserve"
    }  # fmt: skip
    assert model.routing.default == "onnx"
    assert model.batching is not None  # every signature has the free batch dim
    for v in model.variants.values():
        assert (folder / v.artifact).is_file()
    with np.load(folder / "samples.npz") as f:
        out = model.signature.outputs[0].name
        assert np.array_equal(f["logits"], f[f"output.{out}"])
        assert np.array_equal(f["labels"], f["logits"].argmax(axis=1))
        assert f["inputs"].shape[0] == f["logits"].shape[0] == 8
    assert (folder / "import.json").is_file()
    assert not [p for p in folder.parent.parent.iterdir() if p.name.startswith(".")]


def test_signatures_read_from_each_format(imported_repository: Repository) -> None:
    def sig(name: str) -> list[tuple[str, str, list[int]]]:
        s = imported_repository[name].signature
        return [(t.name, t.datatype, list(t.shape)) for t in (*s.inputs, *s.outputs)]

    assert sig("cnn_onnx") == [("image", "FP32", [-1, 3, 16, 16]), ("logits", "FP32", [-1, 10])]
    image, logits = ("image", "FP32", [-1, 3, 16, 16]), ("output", "FP32", [-1, 10])
    assert sig("cnn_torch_export") == [image, logits]
    assert sig("mlp_torchscript") == [("features", "FP32", [-1, 20]), ("output", "FP32", [-1, 5])]
    nhwc, output_0 = ("image", "FP32", [-1, 16, 16, 3]), ("output_0", "FP32", [-1, 10])
    assert sig("cnn_savedmodel") == [nhwc, output_0]
    assert sig("mlp_jax_export") == [("input", "FP32", [-1, 20]), ("output", "FP32", [-1, 5])]
