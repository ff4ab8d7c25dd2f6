"""`python -m model_repo.importer import SOURCE --name NAME [...]` (`servegate models import`).

Exit status: 0 when at least one variant matched the source and was written, 1 when
none did (nothing is written), 2 for bad input (not a model, a name clash, a signature
that needs a flag); the message says what to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.config import DEFAULT_REPOSITORY
from model_repo.importer import parity, samples
from model_repo.importer.report import console as make_console
from model_repo.importer.repository import RepositoryError
from model_repo.importer.signature import SignatureError
from model_repo.importer.sources import SourceError
from model_repo.importer.variants import ORDER, parse


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",")] if text else []


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_repo.importer")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("import", help="import a model file as parity-checked variants")
    i.add_argument("source", type=Path, help="ONNX file, TorchScript file, torch.export .pt2, "
                   "SavedModel folder, or serialized jax.export artifact")  # fmt: skip
    i.add_argument("--name", required=True, help="model name in the repository")
    i.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    i.add_argument("--variants", help=f"comma list of {','.join(ORDER)} (default: all)")
    i.add_argument("--version", type=int, help="add this version to an existing model")
    i.add_argument("--force", action="store_true", help="replace an existing model or version")
    i.add_argument("--rtol", type=float, default=parity.RTOL)
    i.add_argument("--atol", type=float, default=parity.ATOL)
    i.add_argument("--batch-dim", type=int, help="treat this dim (0) as the free batch dim")
    i.add_argument(
        "--input-shape", action="append", default=[], metavar="[NAME:]DIMS[:DTYPE]",
        help="an input's shape, -1 for the batch dim, e.g. x:-1,3,32,32 (repeatable)",
    )  # fmt: skip
    i.add_argument("--input-names", help="served input names, comma-separated, in order")
    i.add_argument("--output-names", help="served output names, comma-separated, in order")
    i.add_argument("--samples", type=Path, help=".npz (keyed by input name) or .npy inputs")
    i.add_argument("--rows", type=int, default=samples.DEFAULT_ROWS, help="generated sample rows")
    i.add_argument("--seed", type=int, default=0, help="seed for generated samples")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = make_console()
    from model_repo.importer.pipeline import Options, run

    try:
        opts = Options(
            source=args.source, name=args.name, repository=args.repository,
            variants=parse(args.variants), version=args.version, force=args.force,
            rtol=args.rtol, atol=args.atol, batch_dim=args.batch_dim,
            input_shapes=args.input_shape, input_names=_names(args.input_names),
            output_names=_names(args.output_names), samples_path=args.samples,
            rows=args.rows, seed=args.seed,
        )  # fmt: skip
        result = run(opts, console)
    except (SourceError, SignatureError, RepositoryError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    if not result.kept:
        console.print(f"[red]no variant matched the source; nothing written[/] "
                      f"({result.seconds:.1f} s)")  # fmt: skip
        return 1
    console.print(
        f"[green]{args.name}[/]: {', '.join(result.kept)} in {result.version_folder} "
        f"({result.seconds:.1f} s). Serve: servegate up; compare: servegate bench --models "
        f"{args.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
