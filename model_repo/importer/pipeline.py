"""One import, start to end: source -> signature -> samples -> reference -> each variant
built and held to the reference -> model.yaml, version folder and samples.npz in place.

Every variant is checked as its runner would run it, on the full sample batch and on
batch 1 (a converter that baked the sample batch size in fails there).
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from model_repo.importer import parity, repository, samples, signature, sources
from model_repo.importer.produce import FormError, Forms, build, describe
from model_repo.importer.report import Outcome, reasons, table
from model_repo.importer.variants import BATCHING, VARIANTS


@dataclass(frozen=True)
class Options:
    source: Path
    name: str
    repository: Path
    variants: list[str]
    version: int | None = None
    force: bool = False
    rtol: float = parity.RTOL
    atol: float = parity.ATOL
    batch_dim: int | None = None
    input_shapes: list[str] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    samples_path: Path | None = None
    rows: int = samples.DEFAULT_ROWS
    seed: int = 0


@dataclass
class Result:
    outcomes: list[Outcome]
    version_folder: Path | None
    seconds: float

    @property
    def kept(self) -> list[str]:
        return [o.variant for o in self.outcomes if o.kept]


def _artifact_bytes(variant: str, folder: Path) -> int:
    if variant == "tensorflow":
        paths = [folder / "saved_model.pb", folder / "fingerprint.pb", folder / "variables"]
    else:
        paths = [folder / VARIANTS[variant].artifact]
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def run(opts: Options, console: Console) -> Result:
    """The whole import; raises SourceError/SignatureError/RepositoryError on bad input."""
    t_start = time.perf_counter()
    target = repository.plan(opts.repository, opts.name, opts.version, opts.force)
    with console.status(f"reading {opts.source}"):
        source = sources.load(opts.source)
        sig = signature.apply_overrides(
            source.signature(),
            input_shapes=opts.input_shapes,
            batch_dim=opts.batch_dim,
            input_names=opts.input_names,
            output_names=opts.output_names,
        )
        signature.check_servable(sig)
        inputs = (
            samples.load(opts.samples_path, sig)
            if opts.samples_path
            else samples.generate(sig, opts.rows, opts.seed)
        )
        rows = len(next(iter(inputs.values())))
        try:
            reference_list = source.run(sig, inputs)
        except Exception as exc:
            raise sources.SourceError(
                f"the source does not run on the samples: {describe(exc)}"
            ) from exc
        sig = signature.settle_outputs(sig, reference_list, rows)
        reference = dict(zip([s.name for s in sig.outputs], reference_list, strict=True))
    console.print(f"[bold]{opts.name}[/]: {source.kind} source, signature "
                  f"{[f'{s.name} {s.datatype} {list(s.shape)}' for s in sig.inputs]} -> "
                  f"{[f'{s.name} {s.datatype} {list(s.shape)}' for s in sig.outputs]}")  # fmt: skip
    stage = repository.staging(target)
    work = Path(tempfile.mkdtemp(prefix="servegate-import-"))
    try:
        forms = Forms(source, sig, inputs, work)
        outcomes = _variants(opts, forms, reference, stage, target.version, console)
        console.print(table(outcomes, opts.rtol, opts.atol))
        for line in reasons(outcomes):
            console.print(f"[red]{line}[/]", soft_wrap=True)
        kept = [o for o in outcomes if o.kept]
        if not kept:
            shutil.rmtree(stage, ignore_errors=True)
            return Result(outcomes, None, time.perf_counter() - t_start)
        _remove_left_out(outcomes, stage)
        samples.write(stage, sig, inputs, reference)
        record = {
            "source": str(opts.source), "source_kind": source.kind,
            "imported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "samples": rows, "rtol": opts.rtol, "atol": opts.atol,
            "variants": [o.as_json() for o in outcomes],
        }  # fmt: skip
        (stage / "import.json").write_text(json.dumps(record, indent=2))
        text = repository.model_yaml(target, _document(opts, sig, kept, source.kind), _header(opts))
        final = repository.commit(target, stage, text)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Result(outcomes, final, time.perf_counter() - t_start)


def _variants(
    opts: Options,
    forms: Forms,
    reference: samples.Arrays,
    stage: Path,
    version: str,
    console: Console,
) -> list[Outcome]:
    outcomes = []
    batched = forms.sig.batched
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task("", total=len(opts.variants))
        for name in opts.variants:
            progress.update(task, description=f"{name}: converting and checking")
            t0 = time.perf_counter()
            converter, comparison, reason = "", None, ""
            try:
                converter, runner = build(name, forms, stage, opts.name, version)
                try:
                    got = runner(forms.inputs)
                    comparison = parity.compare(
                        reference,
                        dict(zip(reference, got, strict=False)),
                        rtol=opts.rtol,
                        atol=opts.atol,
                    )
                    if comparison.ok and batched and len(next(iter(forms.inputs.values()))) > 1:
                        one = samples.first_row(forms.inputs)
                        got1 = runner(one)
                        comparison = parity.merge(comparison, parity.compare(
                            samples.first_row(reference), dict(zip(reference, got1, strict=False)),
                            rtol=opts.rtol, atol=opts.atol))  # fmt: skip
                    if not comparison.ok:
                        reason = f"does not match: {comparison.problem}"
                except Exception as exc:
                    reason = f"does not run: {describe(exc)}"
            except FormError as exc:
                reason = str(exc)
            except Exception as exc:
                reason = describe(exc)
            seconds = time.perf_counter() - t0
            out = Outcome(name, VARIANTS[name].runner, converter, comparison,
                          _artifact_bytes(name, stage), seconds, reason)  # fmt: skip
            outcomes.append(out)
            verdict = "[green]kept[/]" if out.kept else "[red]left out[/]"
            console.print(f"  {name}: {verdict} in {seconds:.1f} s")
            progress.advance(task)
    return outcomes


def _remove_left_out(outcomes: list[Outcome], stage: Path) -> None:
    """A variant left out leaves no artifact behind (a runner would serve it)."""
    for o in outcomes:
        if o.kept:
            continue
        if o.variant == "tensorflow":
            for n in ("saved_model.pb", "fingerprint.pb", "variables", "assets"):
                p = stage / n
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        else:
            (stage / VARIANTS[o.variant].artifact).unlink(missing_ok=True)


def _header(opts: Options) -> str:
    return (
        f"# {opts.name}: imported by `servegate models import` from {opts.source.name}.\n"
        "# Only variants that matched the source on the samples are listed; see\n"
        "# <version>/import.json for the converters and the differences measured.\n"
    )


def _document(
    opts: Options, sig: signature.Signature, kept: list[Outcome], kind: str
) -> dict[str, object]:
    names = [o.variant for o in kept]
    doc: dict[str, object] = {
        "description": f"Imported from {opts.source.name} ({kind}).",
        "versions": [int(opts.version or 1)],
        "signature": sig.as_yaml(),
        "routing": {"default": "onnx" if "onnx" in names else names[0]},
    }
    if sig.batched:
        doc["batching"] = dict(BATCHING)
    doc["variants"] = {n: VARIANTS[n].as_yaml(sig.batched) for n in names}
    return doc
