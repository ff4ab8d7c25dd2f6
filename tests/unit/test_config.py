"""model.yaml validation: bad files are refused all at once, each problem with file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import RepositoryError, load_repository
from tests.conftest import TINY_MODEL


def _repo(tmp_path: Path, **models: str) -> Path:
    for name, text in models.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.yaml").write_text(text)
    return tmp_path


def test_example_repository_loads() -> None:
    from gateway.config import DEFAULT_REPOSITORY

    repo = load_repository(DEFAULT_REPOSITORY)
    assert {"digits", "resnet18"} <= set(repo)
    digits = repo["digits"]
    assert digits.signature.inputs[0].shape == (-1, 64)
    assert digits.routing.default in digits.variants
    assert digits.latest_version == "1"


def test_tiny_model_defaults_name_to_folder(tmp_path: Path) -> None:
    repo = load_repository(_repo(tmp_path, tiny=TINY_MODEL))
    assert repo["tiny"].name == "tiny"
    assert repo.version_folder("tiny") == tmp_path / "tiny" / "1"
    assert repo["tiny"].variants["b"].protocol == "v2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("FP32, shape: [-1, 4]", "FLOAT, shape: [-1, 4]"), "unknown datatype 'FLOAT'"),
        (("shape: [-1, 4]}", "shape: [-3, 4]}"), "dims must be >= -1"),
        (("default: a", "default: c"), r"names variants the model does not have: \['c'\]"),
        (("runner: onnx", "runner: caffe"), "variants.a.runner"),
        (("versions: [1]", "versions: [one]"), "versions must be a non-empty list of numbers"),
        (("versions: [1]", "versions: [1]\nextra_field: 1"), "extra_field"),
    ],
)  # fmt: skip
def test_bad_model_files_name_file_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    _repo(tmp_path, tiny=TINY_MODEL.replace(*change))
    with pytest.raises(RepositoryError, match=message) as info:
        load_repository(tmp_path)
    assert str(tmp_path / "tiny" / "model.yaml") in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    _repo(
        tmp_path,
        one=TINY_MODEL.replace("default: a", "default: zz"),
        two=TINY_MODEL.replace("FP32, shape: [-1, 4]}", "FP99, shape: [-1, 4]}"),
        three="name: other\n" + TINY_MODEL,
        four=": : not yaml [",
    )
    with pytest.raises(RepositoryError) as info:
        load_repository(tmp_path)
    text = str(info.value)
    for name in ("one", "two", "three", "four"):
        assert str(tmp_path / name / "model.yaml") in text
    assert "differs from its folder's name" in text


def test_missing_repository_folder(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="is not a folder"):
        load_repository(tmp_path / "absent")
