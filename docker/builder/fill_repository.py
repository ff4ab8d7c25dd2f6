"""The compose/Kubernetes model builder: fills the model repository volume for every runner.

Runs once before the runners start (a one-shot service, or an init container):
1. each model folder's model.yaml is copied from the image into the volume; built
   version folders already there are kept, so a second run builds only what is missing;
2. `python -m model_repo.builders` builds what is missing (every framework, CPU builds);
3. TorchServe's model store, `<repo>/.torchserve/<model>-v<version>.mar`: hard links to
   each built torchserve artifact (TorchServe loads them all: `load_models=all`);
4. TF Serving's `<repo>/.tfserving/models.config`: every model with a tfserving variant
   and its built versions (tensorflow_model_server --model_config_file);
5. with --torchserve-key-file: each torchserve variant's `settings.key_file` names the
   file TorchServe writes its token-authorization keys to (a volume the gateway mounts
   read-only), which is where the gateway reads them (gateway/backends/torchserve_keys.py);
6. `<repo>/.servegate-ready` last: what Kubernetes runners wait for (compose waits for
   this service to exit 0 instead).

Both hidden folders sit beside the models: the repository scan reads only folders that
hold a model.yaml.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from gateway.config import DEFAULT_REPOSITORY, Repository, load_repository
from gateway.supervisor.torchserve import torchserve_models

TORCHSERVE_STORE = ".torchserve"
TFSERVING_CONFIG = ".tfserving/models.config"
READY = ".servegate-ready"


def _write(path: Path, text: str) -> None:
    """Atomically: a runner starting beside a rebuild never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def copy_models(source: Path, repository: Path) -> list[str]:
    """The image's model.yaml files into the volume; returns the model names."""
    names = []
    for yaml_file in sorted(source.glob("*/model.yaml")):
        _write(repository / yaml_file.parent.name / "model.yaml", yaml_file.read_text())
        names.append(yaml_file.parent.name)
    return names


def torchserve_store(repo: Repository) -> list[str]:
    """Hard links `<model>-v<version>.mar` -> each built torchserve artifact, named as
    `servegate up` names them (TorchServe reads the model's name and version from the
    archive itself)."""
    store = repo.root / TORCHSERVE_STORE
    if store.exists():
        shutil.rmtree(store)
    store.mkdir()
    for name, versions in torchserve_models(repo).items():
        for version, mar in versions.items():
            if mar.is_file():
                os.link(mar, store / f"{name}-v{version}.mar")
    return sorted(p.stem for p in store.glob("*.mar"))


def tfserving_config(repo: Repository) -> str:
    """TF Serving's model_config_list: each model's built SavedModel versions."""
    entries = []
    for model in repo.values():
        variants = [v for v in model.variants.values() if v.runner == "tfserving"]
        if not variants:
            continue
        built = [
            v for v in model.versions
            if (repo.version_folder(model.name, v) / variants[0].artifact).is_file()
        ]  # fmt: skip
        if not built:
            continue
        versions = " ".join(f"versions: {v}" for v in built)
        entries.append(
            "  config {\n"
            f'    name: "{model.name}"\n'
            f'    base_path: "{repo.folder(model.name)}"\n'
            '    model_platform: "tensorflow"\n'
            f"    model_version_policy {{ specific {{ {versions} }} }}\n"
            "  }\n"
        )
    return "model_config_list {\n" + "".join(entries) + "}\n"


def name_key_file(repository: Path, key_file: str) -> None:
    """Sets `settings.key_file` on every torchserve variant of every model.yaml."""
    for yaml_file in sorted(repository.glob("*/model.yaml")):
        doc = yaml.safe_load(yaml_file.read_text())
        changed = False
        for variant in (doc.get("variants") or {}).values():
            if variant.get("runner") == "torchserve":
                variant.setdefault("settings", {})["key_file"] = key_file
                changed = True
        if changed:
            _write(yaml_file, yaml.safe_dump(doc, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True, help="The volume to fill.")
    parser.add_argument("--source", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--torchserve-key-file", default=os.environ.get("TORCHSERVE_KEY_FILE"))
    args = parser.parse_args(argv)
    names = copy_models(args.source, args.repository)
    print(f"models: {', '.join(names)} -> {args.repository}", flush=True)
    build = [sys.executable, "-m", "model_repo.builders", "--repository", str(args.repository)]
    if subprocess.call(build) != 0:
        return 1
    repo = load_repository(args.repository)
    print(f"torchserve store: {torchserve_store(repo)}", flush=True)
    config = tfserving_config(repo)
    _write(args.repository / TFSERVING_CONFIG, config)
    print(f"tfserving config: {args.repository / TFSERVING_CONFIG}", flush=True)
    if args.torchserve_key_file:
        name_key_file(args.repository, args.torchserve_key_file)
        print(f"torchserve variants read keys from {args.torchserve_key_file}", flush=True)
    load_repository(args.repository)  # what the gateway will read must still validate
    _write(args.repository / READY, "".join(f"{name}\n" for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
