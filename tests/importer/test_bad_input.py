"""Bad input: clear errors (exit status 2), and nothing half-written in the repository.
Small ONNX models built with onnx.helper, imported as their onnx variant only (fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from model_repo.importer.__main__ import main


def tiny_onnx(path: Path, dims: list[int | str] | None = None) -> Path:
    """x [batch, 4] -> Gemm -> y [batch, 3]."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims or ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main(["import", *map(str, args), "--variants", "onnx"])
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def clean(repo: Path) -> list[str]:
    """Everything in the repository that is not a finished model folder."""
    return sorted(str(p.relative_to(repo)) for p in repo.rglob(".*"))


def test_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    code, out = run(capsys, text, "--name", "m", "--repository", repo)
    assert code == 2
    assert "not a model" in out and "SavedModel" in out
    assert list(repo.iterdir()) == []


def test_missing_file_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, tmp_path / "gone.onnx", "--name", "m", "--repository", tmp_path)
    assert code == 2 and "no such file or folder" in out
    (tmp_path / "empty").mkdir()
    code, out = run(capsys, tmp_path / "empty", "--name", "m", "--repository", tmp_path)
    assert code == 2 and "not a TensorFlow SavedModel (no saved_model.pb)" in out
    assert not (tmp_path / "m").exists()


def test_dynamic_input_without_batch_dim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tiny_onnx(tmp_path / "t.onnx", dims=[4, "n"])
    code, out = run(capsys, source, "--name", "m", "--repository", tmp_path)
    assert code == 2
    assert "input 'x' [4, -1]: dims [1] are dynamic" in out and "--input-shape x:" in out
    assert not (tmp_path / "m").exists() and clean(tmp_path) == []


def test_torchscript_needs_its_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    with pytest.warns(DeprecationWarning):  # torch 2.13 deprecates torch.jit
        module = torch.jit.script(torch.nn.Linear(4, 3).eval())
        torch.jit.save(module, str(tmp_path / "m.pt"))
    code, out = run(capsys, tmp_path / "m.pt", "--name", "m", "--repository", tmp_path)
    assert code == 2
    assert "the source does not say its shape" in out and "--input-shape input:-1" in out


def test_existing_name_needs_version_or_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tiny_onnx(tmp_path / "t.onnx")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert run(capsys, source, "--name", "m", "--repository", repo)[0] == 0
    config = (repo / "m" / "model.yaml").read_text()

    code, out = run(capsys, source, "--name", "m", "--repository", repo)
    assert code == 2 and "pass --version N to add a version, or --force to replace it" in out
    assert (repo / "m" / "model.yaml").read_text() == config

    assert run(capsys, source, "--name", "m", "--repository", repo, "--version", "2")[0] == 0
    assert yaml.safe_load((repo / "m" / "model.yaml").read_text())["versions"] == [1, 2]
    assert (repo / "m" / "2" / "model.onnx").is_file() and (
        repo / "m" / "1" / "model.onnx"
    ).is_file()

    code, out = run(capsys, source, "--name", "m", "--repository", repo, "--version", "2")
    assert code == 2 and "exists: pass --force to replace it" in out

    assert run(capsys, source, "--name", "m", "--repository", repo, "--force")[0] == 0
    assert yaml.safe_load((repo / "m" / "model.yaml").read_text())["versions"] == [1]
    assert not (repo / "m" / "2").exists()
    assert clean(repo) == []


def test_given_samples_are_the_reference_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tiny_onnx(tmp_path / "t.onnx")
    x = np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=x)
    code, _ = run(
        capsys, source, "--name", "m", "--repository", tmp_path, "--samples", tmp_path / "s.npz"
    )
    assert code == 0
    with np.load(tmp_path / "m" / "1" / "samples.npz") as f:
        assert np.array_equal(f["inputs"], x)
        w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
        np.testing.assert_allclose(f["logits"], x @ w, rtol=1e-6)
        assert np.array_equal(f["labels"], (x @ w).argmax(axis=1))
    np.savez(tmp_path / "bad.npz", x=x[:, :3])
    code, out = run(
        capsys, source, "--name", "n", "--repository", tmp_path, "--samples", tmp_path / "bad.npz"
    )
    assert code == 2 and "x has shape [5, 3], the signature says [-1, 4]" in out
