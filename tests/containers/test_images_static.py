"""docker/Dockerfile and what it installs, statically: hadolint, and every package pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.containers.tools import DOCKER, DOCKERFILE, ROOT, need, run

pytestmark = pytest.mark.container

CONSTRAINTS = DOCKER / "constraints.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _canonical(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0])


def test_hadolint() -> None:
    done = run([need("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKERFILE)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    """The lint is no rubber stamp: an unpinned apt-get install is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12\nRUN apt-get update && apt-get install -y curl\n")
    done = run([need("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), str(bad)])
    assert done.returncode != 0


def test_every_pip_install_is_pinned() -> None:
    """Each package a `pip install` names is pinned: by `==` there, or in constraints.txt
    (PIP_CONSTRAINT), which hadolint's DL3013 cannot see."""
    pins = _pins()
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    installs = re.findall(r"pip install ([^&\n]*)", text)
    assert installs
    for args in installs:
        for word in args.split():
            word = word.strip('"')
            if word.startswith(("-", "/")) or word in {"--yes"}:
                continue
            if "==" in word:
                continue
            assert _requirement_name(word) in pins, f"{word} is not pinned"


def test_constraints_cover_the_project() -> None:
    """Every dependency the images install from pyproject.toml has an exact pin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("onnx", "jax", "tensorflow", "torch", "build"):
        wanted += [r for r in project["optional-dependencies"][extra] if "servegate[" not in r]
    pins = _pins()
    unpinned = sorted({_requirement_name(r) for r in wanted} - set(pins))
    assert not unpinned, f"run docker/offline/prepare.sh constraints: {unpinned}"
