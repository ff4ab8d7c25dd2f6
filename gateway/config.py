"""Leaf: process settings (the only reader of the environment) and model.yaml models.

`load_repository(root)` reads every `<root>/<model>/model.yaml`, validates all of them,
and raises one error listing every problem with its file and field, rather than
starting with some models missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.tensors import DATATYPES

log = logging.getLogger("servegate.repository")

RunnerKind = Literal["onnx", "jax", "torchserve", "tfserving", "v2"]

# The wire protocol each runner kind speaks; the gateway has one client per protocol.
# "v2" names any external KServe v2 gRPC server (Triton, MLServer, KServe).
PROTOCOL_OF_RUNNER: Mapping[str, str] = {
    "onnx": "v2",
    "jax": "v2",
    "v2": "v2",
    "torchserve": "torchserve",
    "tfserving": "tfserving",
}

DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repo"


class Settings(BaseSettings):
    """Process settings: flags override SERVEGATE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="SERVEGATE_", frozen=True)

    host: str = "127.0.0.1"
    """Address the HTTP and gRPC front ends bind."""
    http_port: int = 8000
    grpc_port: int = 8001
    repository: Path = DEFAULT_REPOSITORY
    """Folder of model folders, each with a model.yaml."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest request body (HTTP) or message (gRPC) accepted; larger ones get 413."""
    default_timeout_s: float = 10.0
    """Deadline for a request that carries none; passed on to the runner."""
    log_level: str = "info"
    runner_sockets: bool = True
    """Forward to our local v2 runners (onnx, jax) over their framed Unix socket rather than
    gRPC (SERVEGATE_RUNNER_SOCKETS=0 turns it off). The runners serve gRPC either way."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Frozen):
    """One input or output: name, v2 datatype, shape with -1 for a free dimension."""

    name: str = Field(min_length=1)
    datatype: str
    shape: tuple[int, ...]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, v: str) -> str:
        if v not in DATATYPES:
            raise ValueError(f"unknown datatype {v!r}; one of {sorted(DATATYPES)}")
        return v

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < -1 for d in v):
            raise ValueError(f"dims must be >= -1, got {list(v)}")
        return v


class Signature(_Frozen):
    """The one signature every variant of a model serves."""

    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Signature:
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate {kind} names in {names}")
        return self

    def input(self, name: str) -> TensorSpec | None:
        return next((s for s in self.inputs if s.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((s for s in self.outputs if s.name == name), None)


class VariantConfig(_Frozen):
    """One framework's build of the model, and where it is served."""

    runner: RunnerKind
    """Which runner serves it: onnx, jax, torchserve, tfserving, or an external v2 server."""
    artifact: str = ""
    """The artifact's path inside a version folder (built by `servegate models build`)."""
    endpoint: str | None = None
    """host:port of a runner started elsewhere (containers); None: `servegate up` starts it."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Runner-specific settings (threads, batch buckets, ...)."""

    @property
    def protocol(self) -> str:
        return PROTOCOL_OF_RUNNER[self.runner]


class BatchingConfig(_Frozen):
    """Dynamic batching in the gateway, per variant (see gateway/batching.py)."""

    max_batch_size: int = Field(default=32, ge=1)
    """Most rows (dim 0) in one runner call; a larger single request goes alone."""
    max_delay_ms: float = Field(default=0.0, ge=0)
    """How long a batch may wait to fill. 0: never wait; requests that arrive while a
    batch is in flight are batched anyway, so a lone client pays nothing."""
    max_queue: int = Field(default=256, ge=1)
    """Requests waiting per variant; past it the gateway answers 429 / RESOURCE_EXHAUSTED."""


class RoutingConfig(_Frozen):
    """How a request that pins no variant is routed (issue 5 adds policies)."""

    default: str
    """The variant a request gets when it does not pin one."""


class ModelConfig(_Frozen):
    """A model folder's model.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    versions: tuple[str, ...] = ("1",)
    """Numbered version folders; the last one is the default version."""
    signature: Signature
    variants: dict[str, VariantConfig] = Field(min_length=1)
    routing: RoutingConfig
    batching: BatchingConfig | None = None
    """Dynamic batching for every variant of the model; absent: each request goes alone.
    Needs a batch dimension: every input and output shape starts with -1."""
    default_timeout_ms: int | None = Field(default=None, gt=0)

    @field_validator("versions", mode="before")
    @classmethod
    def _versions_as_str(cls, v: Any) -> Any:
        return tuple(str(x) for x in v) if isinstance(v, list | tuple) else v

    @field_validator("versions")
    @classmethod
    def _numbered(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or not all(x.isdigit() for x in v):
            raise ValueError(f"versions must be a non-empty list of numbers, got {list(v)}")
        return tuple(sorted(v, key=int))

    @model_validator(mode="after")
    def _routing_names_variants(self) -> ModelConfig:
        if self.routing.default not in self.variants:
            raise ValueError(
                f"routing.default {self.routing.default!r} is not a variant "
                f"(variants: {sorted(self.variants)})"
            )
        if self.batching is not None:
            specs = (*self.signature.inputs, *self.signature.outputs)
            unbatched = [s.name for s in specs if s.shape[:1] != (-1,)]
            if unbatched:
                raise ValueError(f"batching needs a leading -1 dim; {unbatched} have none")
        for name in self.variants:
            if "@" in name or "/" in name:
                raise ValueError(f"variant name {name!r} may not contain '@' or '/'")
        return self

    @property
    def latest_version(self) -> str:
        return self.versions[-1]


class RepositoryError(ValueError):
    """Every problem found in a model repository, one per line."""


@dataclass(frozen=True)
class Artifact:
    """One built artifact of a model version, as a runner loads it."""

    model: ModelConfig
    variant: VariantConfig
    version: str
    path: Path


class Repository(Mapping[str, ModelConfig]):
    """An immutable name -> ModelConfig mapping, plus where each model folder lives."""

    def __init__(self, root: Path, models: Mapping[str, ModelConfig]) -> None:
        self.root = root
        self._models = dict(models)

    def __getitem__(self, name: str) -> ModelConfig:
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def folder(self, name: str) -> Path:
        return self.root / name

    def version_folder(self, name: str, version: str | None = None) -> Path:
        return self.folder(name) / (version or self._models[name].latest_version)

    def built_artifacts(self, runner: str) -> Iterator[Artifact]:
        """Every built artifact a local `runner` should load: one per model version.

        Variants with an external endpoint are served elsewhere; versions whose artifact
        is not built are logged and skipped, so a runner serves what exists.
        """
        for model in self._models.values():
            for variant in model.variants.values():
                if variant.runner != runner or variant.endpoint:
                    continue
                for version in model.versions:
                    path = self.version_folder(model.name, version) / variant.artifact
                    if path.exists():
                        yield Artifact(model, variant, version, path)
                    else:
                        log.warning("%s v%s: %s is not built; skipped", model.name, version, path)


def load_model(folder: Path) -> ModelConfig:
    """Reads and validates one model folder; the name defaults to the folder's name."""
    path = folder / "model.yaml"
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise RepositoryError(f"{path}: expected a mapping at the top level")
    raw.setdefault("name", folder.name)
    return ModelConfig.model_validate(raw)


def load_repository(root: Path) -> Repository:
    """Loads every model folder under `root`; raises RepositoryError listing all problems."""
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} is not a folder")
    models: dict[str, ModelConfig] = {}
    problems: list[str] = []
    for folder in sorted(p for p in root.iterdir() if (p / "model.yaml").is_file()):
        try:
            cfg = load_model(folder)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(x) for x in err["loc"]) or "(top)"
                problems.append(f"{folder / 'model.yaml'}: {where}: {err['msg']}")
            continue
        except (yaml.YAMLError, RepositoryError) as exc:
            problems.append(f"{folder / 'model.yaml'}: {exc}")
            continue
        if cfg.name != folder.name:
            problems.append(
                f"{folder / 'model.yaml'}: name {cfg.name!r} differs from its folder's name"
            )
        models[cfg.name] = cfg
    if problems:
        raise RepositoryError("\n".join(problems))
    return Repository(root, models)
