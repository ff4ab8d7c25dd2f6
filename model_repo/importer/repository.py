"""Where an import lands: a staging folder beside the model, moved into place at the end.

Nothing half-written is ever visible to `servegate up`: the version folder is built
under a dot-named staging folder (load_repository reads only folders with a model.yaml,
and staging gets none), renamed into place, and model.yaml is written last, atomically.
An existing model needs --version N (a new version) or --force (replaced).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config import load_model


class RepositoryError(ValueError):
    """The name or version clashes with what is there; nothing was written."""


@dataclass(frozen=True)
class Target:
    """The model folder and the version an import writes."""

    repository: Path
    name: str
    version: str
    existing: dict[str, Any] | None  # the model.yaml there now (None: a new model)
    replace: bool  # --force without --version: the whole model folder is replaced

    @property
    def folder(self) -> Path:
        return self.repository / self.name


def plan(repository: Path, name: str, version: int | None, force: bool) -> Target:
    """Checks the name and version against the repository before any work is done."""
    if not name or not all(c.isalnum() or c in "_.-" for c in name) or name.startswith("."):
        raise RepositoryError(f"--name {name!r}: letters, digits, '_', '.', '-' only")
    if version is not None and version < 1:
        raise RepositoryError("--version must be >= 1")
    if not repository.is_dir():
        raise RepositoryError(f"--repository {repository}: no such folder")
    folder = repository / name
    config = folder / "model.yaml"
    if not folder.exists():
        return Target(repository, name, str(version or 1), None, False)
    if not config.is_file():
        raise RepositoryError(f"{folder} exists and is not a model folder (no model.yaml)")
    existing = yaml.safe_load(config.read_text()) or {}
    if version is None:
        if not force:
            raise RepositoryError(
                f"model {name!r} exists in {repository}: pass --version N to add a version, "
                "or --force to replace it"
            )
        return Target(repository, name, "1", None, True)
    if (folder / str(version)).exists() and not force:
        raise RepositoryError(f"{folder / str(version)} exists: pass --force to replace it")
    return Target(repository, name, str(version), existing, False)


def staging(target: Target) -> Path:
    """A fresh hidden folder on the same file system, for an atomic rename at the end."""
    base = target.folder if target.existing is not None else target.repository
    return Path(tempfile.mkdtemp(prefix=f".import-{target.name}-", dir=base))


def model_yaml(target: Target, document: dict[str, Any], header: str) -> str:
    """The model.yaml text; for a new version, merged into the one already there."""
    if target.existing is not None:
        merged = dict(target.existing)
        old_sig = merged.get("signature")
        if old_sig is not None and old_sig != document["signature"]:
            raise RepositoryError(
                f"the signature differs from {target.folder / 'model.yaml'}'s: import it "
                "under another --name"
            )
        versions = {str(v) for v in merged.get("versions", ["1"])} | {target.version}
        merged["versions"] = sorted(int(v) for v in versions)
        variants = dict(merged.get("variants") or {})
        for vname, entry in document["variants"].items():
            variants.setdefault(vname, entry)
        merged["variants"] = variants
        document = merged
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)


def commit(target: Target, stage: Path, yaml_text: str) -> Path:
    """Moves the staged version into place and writes model.yaml; returns the version folder."""
    check = stage / ".check"
    check.mkdir()
    (check / "model.yaml").write_text(yaml_text)
    load_model(check)  # the gateway's own validation, before anything moves
    shutil.rmtree(check)
    final = target.folder / target.version
    if target.existing is not None:
        if final.exists():
            shutil.rmtree(final)
        stage.rename(final)
    else:
        model_stage = Path(
            tempfile.mkdtemp(prefix=f".import-{target.name}-", dir=target.repository)
        )
        stage.rename(model_stage / target.version)
        old = None
        if target.replace and target.folder.exists():
            old = target.folder.rename(target.repository / f".replaced-{target.name}-{os.getpid()}")
        model_stage.rename(target.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    tmp = target.folder / ".model.yaml.tmp"
    tmp.write_text(yaml_text)
    tmp.replace(target.folder / "model.yaml")
    return final
