"""Importer fixtures: the test models in every source format, imported once per session
into a temporary repository, and that repository served by real runners and a gateway."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Repository, load_repository
from gateway.supervisor.supervisor import needed_runners
from model_repo.importer.pipeline import Options, Result, run
from model_repo.importer.report import console
from tests.importer import sources
from tests.live import LiveRunners, RunningGateway, start_gateway

FORMATS = ("onnx", "torchscript", "torch_export", "savedmodel", "jax_export")
MODELS = [f"{kind}_{fmt}" for fmt in FORMATS for kind in ("cnn", "mlp")]
# TorchScript records no shapes: the user states them (the batch dim as -1).
SHAPES = {"cnn": ["image:-1,3,16,16"], "mlp": ["features:-1,20"]}


def import_model(source: Path, name: str, repository: Path, **options: object) -> Result:
    """One import in this process. The converters warn at length (deprecations in torch,
    TensorFlow, tf2onnx); the importer is a program of its own, so its warnings are not
    the test suite's errors."""
    opts = Options(source=source, name=name, repository=repository,
                   variants=["onnx", "jax", "tensorflow", "pytorch"], **options)  # type: ignore[arg-type]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(opts, console())


@pytest.fixture(scope="session")
def source_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """'cnn.onnx', 'mlp.savedmodel', ... -> the file or folder, built by each framework."""
    folder = tmp_path_factory.mktemp("sources")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            **sources.write_torch(folder),
            **sources.write_tensorflow(folder),
            **sources.write_jax(folder),
        }


@pytest.fixture(scope="session")
def imported(
    source_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Result]]:
    """(repository, model name -> import result) for every model in every format."""
    repo = tmp_path_factory.mktemp("imported")
    results = {}
    for name in MODELS:
        kind, fmt = name.split("_", 1)
        shapes = SHAPES[kind] if fmt == "torchscript" else []
        results[name] = import_model(source_files[f"{kind}.{fmt}"], name, repo, input_shapes=shapes)
    return repo, results


@pytest.fixture(scope="session")
def imported_repository(imported: tuple[Path, dict[str, Result]]) -> Repository:
    return load_repository(imported[0])


@pytest.fixture(scope="session")
def served(
    imported_repository: Repository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway over every runner the imported repository needs (all four frameworks)."""
    live = LiveRunners(imported_repository, lambda k: tmp_path_factory.mktemp(f"import-{k}"))
    try:
        endpoints = {kind: live.hop(kind) for kind in needed_runners(imported_repository)}
        gw = start_gateway(imported_repository, endpoints, key_files=live.key_files())
        yield gw
        gw.stop()
    finally:
        live.stop()
