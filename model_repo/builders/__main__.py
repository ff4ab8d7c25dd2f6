"""`python -m model_repo.builders [--model M] [--force]`: builds what is missing.

One set of reference weights per model version (trained or seeded once, then reused),
then one exporter module per framework. Runs in its own process so the gateway never
imports an ML framework.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from gateway.config import DEFAULT_REPOSITORY, ModelConfig, load_repository
from model_repo.builders.networks import MLP, WEIGHTS_FILE, ResNet, load_network

# runner kind -> exporter module (each has `export(network, model, out_path)`)
EXPORTERS = {
    "onnx": "model_repo.builders.export_onnx",
    "tfserving": "model_repo.builders.export_tensorflow",
    "jax": "model_repo.builders.export_jax",
    "torchserve": "model_repo.builders.export_torch",
}

console = Console()


def _digits(version_dir: Path) -> tuple[MLP, dict[str, float | int]]:
    from model_repo.builders import digits

    trained = digits.train()
    return trained.network, digits.write(trained, version_dir)


def _resnet18(version_dir: Path) -> tuple[ResNet, dict[str, float | int]]:
    from model_repo.builders import resnet18

    return resnet18.write(version_dir)


Network = MLP | ResNet
# model name -> makes the reference weights (and samples) in a version folder
MODELS: dict[str, Callable[[Path], tuple[Network, dict[str, float | int]]]] = {
    "digits": _digits,
    "resnet18": _resnet18,
}


def missing(model: ModelConfig, version_dir: Path) -> list[str]:
    """The variants whose artifact is not built yet (plus 'weights' when those are missing)."""
    out = [] if (version_dir / WEIGHTS_FILE).exists() else ["weights"]
    return out + [
        name
        for name, v in model.variants.items()
        if v.runner in EXPORTERS and not (version_dir / v.artifact).exists()
    ]


def build(repository: Path, names: list[str] | None, force: bool) -> int:
    repo = load_repository(repository)
    for name in names or list(repo):
        if name not in MODELS:
            console.print(f"[yellow]{name}: no builder; skipped[/]")
            continue
        model = repo[name]
        version_dir = repo.version_folder(name)
        todo = missing(model, version_dir)
        if not todo and not force:
            console.print(f"[green]{name}[/]: up to date in {version_dir}")
            continue
        make = MODELS[name]
        with console.status(f"{name}: reference weights"):
            t0 = time.perf_counter()
            if force or not (version_dir / WEIGHTS_FILE).exists():
                network, record = make(version_dir)
                console.print(
                    f"[green]{name}[/]: weights built in {time.perf_counter() - t0:.1f} s: {record}"
                )
            else:
                network = load_network(version_dir)
        for variant_name, variant in model.variants.items():
            out = version_dir / variant.artifact
            if variant.runner not in EXPORTERS or (out.exists() and not force):
                continue
            with console.status(f"{name}: exporting {variant_name} ({variant.runner})"):
                t0 = time.perf_counter()
                importlib.import_module(EXPORTERS[variant.runner]).export(network, model, out)
            console.print(
                f"[green]{name}[/]: {variant_name} -> {out} ({time.perf_counter() - t0:.1f} s)"
            )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m model_repo.builders")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--model", action="append", help="build only this model (repeatable)")
    parser.add_argument("--force", action="store_true", help="rebuild even what exists")
    parser.add_argument("--json", action="store_true", help="print the build records as JSON")
    args = parser.parse_args()
    build(args.repository, args.model, args.force)
    if args.json:
        repo = load_repository(args.repository)
        records = {}
        for name in repo:
            path = repo.version_folder(name) / "build.json"
            if path.exists():
                records[name] = json.loads(path.read_text())
        print(json.dumps(records))


if __name__ == "__main__":
    main()
