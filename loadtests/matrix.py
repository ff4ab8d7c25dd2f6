"""Load tests: the bench's matrix (variants x protocols x concurrency x batch sizes) and presets.

Pure: which cells run, in which order. Cells that belong together run back to back (one
variant's gateway protocols, then the same load straight to its runner), so machine
noise hits a gateway cell and its direct baseline alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gateway.config import Repository
from loadtests.wire import PROTOCOLS


@dataclass(frozen=True)
class Cell:
    """One load test: `concurrency` closed-loop users sending `batch_size` rows each."""

    model: str
    variant: str
    protocol: str  # http-json | http-binary | grpc
    target: str  # gateway | direct
    concurrency: int
    batch_size: int
    wire: str = "v2"  # the gRPC API spoken: v2 (gateway, onnx, jax), torchserve, tfserving

    @property
    def id(self) -> str:
        """A file-name-safe name, unique within a bench."""
        return (
            f"{self.model}-{self.variant}-{self.target}-{self.protocol}"
            f"-c{self.concurrency}-b{self.batch_size}"
        )

    @property
    def key(self) -> tuple[str, str, str, str, int, int]:
        return (
            self.model, self.variant, self.target, self.protocol, self.concurrency,
            self.batch_size,
        )  # fmt: skip


@dataclass(frozen=True)
class Axes:
    """The concurrency levels and batch sizes of one model."""

    concurrency: tuple[int, ...]
    batch_sizes: tuple[int, ...]


@dataclass(frozen=True)
class Preset:
    """Durations and axes; `models` None means every model of the repository."""

    name: str
    duration_s: float
    warmup_s: float
    axes: Axes
    models: tuple[str, ...] | None = None
    per_model: Mapping[str, Axes] = field(default_factory=dict)  # heavier models, fewer cells
    cold_start: bool = False  # also time each runner's start alone (loadtests/coldstart.py)

    def axes_for(self, model: str) -> Axes:
        return self.per_model.get(model, self.axes)


PRESETS: Mapping[str, Preset] = {
    # CI and a first look: a few seconds a cell, the small model only.
    "quick": Preset("quick", 3.0, 1.0, Axes((1, 8), (1,)), models=("digits",)),
    # Stable figures: windows long enough that p99 rests on thousands of requests (the
    # compute-bound resnet18 on fewer cells); about 40 min for both example models here.
    "default": Preset(
        "default",
        12.0,
        3.0,
        Axes((1, 8, 32), (1, 8)),
        per_model={"resnet18": Axes((1, 4), (1,))},
        cold_start=True,
    ),
}


def override(preset: Preset, **changes: object) -> Preset:
    """The preset with the given fields replaced (None values ignored)."""
    given = {k: v for k, v in changes.items() if v is not None}
    axes = preset.axes
    if "concurrency" in given or "batch_sizes" in given:
        axes = Axes(
            tuple(given.pop("concurrency", axes.concurrency)),  # type: ignore[arg-type]
            tuple(given.pop("batch_sizes", axes.batch_sizes)),  # type: ignore[arg-type]
        )
        given["per_model"] = {}  # explicit axes apply to every model
    return replace(preset, axes=axes, **given)  # type: ignore[arg-type]


def cells(
    repository: Repository,
    preset: Preset,
    *,
    variants: Sequence[str] | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    direct: bool = True,
) -> list[Cell]:
    """Every cell of the matrix, in run order: model, batch, concurrency, variant, target."""
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; known: {list(PROTOCOLS)}")
    models = preset.models if preset.models is not None else tuple(repository)
    missing = [m for m in models if m not in repository]
    if missing:
        raise ValueError(f"models {missing} are not in the repository ({sorted(repository)})")
    out: list[Cell] = []
    for model in models:
        config = repository[model]
        names = _variants(config.variants, variants)
        axes = preset.axes_for(model)
        for batch in axes.batch_sizes:
            for conc in axes.concurrency:
                for variant in names:
                    out += [Cell(model, variant, p, "gateway", conc, batch) for p in protocols]
                    if direct:
                        wire = config.variants[variant].protocol
                        out.append(Cell(model, variant, "grpc", "direct", conc, batch, wire))
    return out


def _variants(declared: Mapping[str, object], wanted: Iterable[str] | None) -> list[str]:
    """The wanted variants this model declares, in the order asked (default: declared)."""
    if wanted is None:
        return list(declared)
    return [v for v in wanted if v in declared]
