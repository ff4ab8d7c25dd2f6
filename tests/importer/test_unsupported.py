"""A model with an op a converter cannot handle: the report names the op and the
converter, the other variants are still produced, and the exit status is non-zero only
when no variant survives. Runs the real command line (`python -m model_repo.importer`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_repository
from tests.importer import sources

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def importer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_repo.importer", "import", *args],
        capture_output=True, text=True, check=False, timeout=500,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sorted_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JAX MLP that sorts its features first: jnp.sort is stablehlo.sort."""
    return sources.write_jax(tmp_path_factory.mktemp("jax"))["sorted.jax_export"]


def test_unsupported_op_is_named_and_the_rest_is_served(sorted_model: Path, tmp_path: Path) -> None:
    done = importer(str(sorted_model), "--name", "sorted", "--repository", str(tmp_path))
    out = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert done.returncode == 0, out
    assert "onnx left out: stablehlo->onnx: op not supported: stablehlo.sort" in out
    assert "pytorch left out: needs the onnx form, which failed: stablehlo->onnx" in out
    model = load_repository(tmp_path)["sorted"]
    assert sorted(model.variants) == ["jax", "tensorflow"]
    assert model.routing.default == "jax"
    folder = tmp_path / "sorted" / "1"
    assert not (folder / "model.onnx").exists() and not (folder / "model.mar").exists()


def test_no_variant_survives_exits_1_and_writes_nothing(sorted_model: Path, tmp_path: Path) -> None:
    done = importer(
        str(sorted_model), "--name", "sorted", "--repository", str(tmp_path),
        "--variants", "onnx,pytorch",
    )  # fmt: skip
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, out
    assert "stablehlo.sort" in out and "nothing written" in out
    assert list(tmp_path.iterdir()) == []
