"""docker/Dockerfile and what it installs, statically: hadolint, and every package pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.containers.tools import COMPOSE, DOCKER, DOCKERFILE, ROOT, need, run

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


def _unpinned(words: list[str], pins: dict[str, str]) -> list[str]:
    """Requirements neither pinned by `==` nor in constraints.txt (PIP_CONSTRAINT)."""
    return [
        w for w in words
        if not w.startswith(("-", "/")) and "==" not in w and _requirement_name(w) not in pins
    ]  # fmt: skip


def test_every_pip_install_is_pinned() -> None:
    """Each package a `pip install` names is pinned: by `==` there, or in constraints.txt
    (PIP_CONSTRAINT), which hadolint's DL3013 cannot see. A build arg counts with its
    default and with every value compose.yaml gives it (the GPU builds)."""
    pins = _pins()
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    args = {
        name: [value.strip('"')]
        for name, value in re.findall(r"^ARG (\w+)=(.*)$", text, flags=re.MULTILINE)
    }
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in compose["services"].values():
        build = service.get("build")
        if isinstance(build, dict):
            for name, value in (build.get("args") or {}).items():
                args.setdefault(name, []).append(value)
    installs = re.findall(r"pip install ([^&\n]*)", text)
    assert installs
    for line in installs:
        words = []
        for word in line.split():
            ref = re.fullmatch(r"\$\{?(\w+)\}?", word)
            for value in args[ref.group(1)] if ref else [word]:
                words += value.strip('"').split()
        assert not _unpinned(words, pins), f"not pinned: {_unpinned(words, pins)} in {line}"


def test_constraints_cover_the_project() -> None:
    """Every dependency the images install from pyproject.toml has an exact pin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("onnx", "jax", "tensorflow", "torch", "build"):
        wanted += [r for r in project["optional-dependencies"][extra] if "servegate[" not in r]
    pins = _pins()
    unpinned = sorted({_requirement_name(r) for r in wanted} - set(pins))
    assert not unpinned, f"run docker/offline/prepare.sh constraints: {unpinned}"
