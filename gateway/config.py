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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.kinds import KINDS, RunnerKind
from gateway.router.config import (
    CircuitConfig,
    FaultConfig,
    RoutingConfig,
    check_fault_names,
    check_names,
)
from gateway.tensors import DATATYPES

log = logging.getLogger("servegate.repository")

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
    max_concurrency: int = 128
    """Requests in flight per variant, batched or not, unless model.yaml's `limits` says
    otherwise; past it the gateway answers 429 / RESOURCE_EXHAUSTED at once."""
    max_queued_bytes: int = 256 * 1024 * 1024
    """Bytes of request bodies the gateway holds at once; past it, 429 (and 413 for a body
    larger than this budget could ever admit)."""
    body_timeout_s: float = 30.0
    """A client must have sent its whole HTTP body within this time (else 408)."""
    shutdown_grace_s: float = 10.0
    """On SIGTERM: readiness goes NOT_SERVING, then requests in flight get this long."""
    drain_delay_s: float = 0.0
    """On SIGTERM: how long to keep accepting after readiness goes NOT_SERVING, so load
    balancers notice first (Kubernetes: a few seconds)."""
    hang_timeout_s: float = 30.0
    """A runner call unanswered this long (or one that gave up at its deadline) gets its
    variant a probe request; a probe unanswered this long means the runner hung (0: off)."""
    restart_backoff_s: float = 0.25
    """Delay before restarting a runner that died; doubles with each recent death."""
    crash_loop_deaths: int = 5
    crash_loop_window_s: float = 60.0
    """A runner that dies crash_loop_deaths times within this window is marked FAILED."""
    standby: str = ""
    """Runner kinds (comma-separated, or `all`) that `servegate up` keeps a warm second
    instance of: it takes over at once when the first dies, where a restart costs the
    framework's cold start. Costs that runner's memory twice."""
    probe_interval_s: float = 1.0
    """How often `servegate up` reads each runner's health."""
    probe_timeout_s: float = 2.0
    probe_failures: int = 3
    """Health probes missed in a row before a runner is taken for hung and restarted."""
    api_keys_file: Path | None = None
    """API keys, one `infer:<key>` or `admin:<key>` a line. No keys at all: auth is off."""
    infer_keys: SecretStr = SecretStr("")
    """More `infer` keys, comma-separated: inference, metadata, health."""
    admin_keys: SecretStr = SecretStr("")
    """More `admin` keys, comma-separated: everything, repository and management routes too."""
    health_scope: Literal["open", "infer"] = "infer"
    """`open` for probes that cannot send a key (Kubernetes gRPC probes)."""
    metrics_scope: Literal["open", "infer", "admin"] = "infer"
    tls_certfile: Path | None = None
    """Serve HTTPS and gRPC over TLS with this certificate (PEM) and tls_keyfile."""
    tls_keyfile: Path | None = None
    tls_client_ca: Path | None = None
    """Require client certificates signed by this CA (mutual TLS)."""
    log_level: str = "info"
    runner_sockets: bool = True
    """Forward to our local v2 runners (onnx, jax) over their framed Unix socket rather than
    gRPC (SERVEGATE_RUNNER_SOCKETS=0 turns it off). The runners serve gRPC either way."""
    workers: int = Field(default=1, ge=1, le=256)
    """Gateway processes sharing the HTTP and gRPC ports (SO_REUSEPORT), each with its own
    batchers and runner connections; above 1 a primary process keeps them (gateway/fleet)."""


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

    runner: str
    """Which runner serves it: onnx, jax, torchserve, tfserving, or an external v2 server
    (gateway/kinds.py lists the kinds)."""
    artifact: str = ""
    """The artifact's path inside a version folder (built by `servegate models build`)."""
    endpoint: str | None = None
    """host:port of a runner started elsewhere (containers); several replicas as a list
    (kept comma-separated) or a `dns:///name:port` that resolves to each (a headless
    Service); None: `servegate up` starts it."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Runner-specific settings (threads, batch buckets, ...)."""

    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoint_list(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            if not v or not all(isinstance(e, str) and e and "," not in e for e in v):
                raise ValueError("endpoint: a list of host:port strings")
            return ",".join(v)
        return v

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"unknown runner {v!r}; one of {sorted(KINDS)}")
        return v

    @property
    def kind(self) -> RunnerKind:
        return KINDS[self.runner]

    @property
    def protocol(self) -> str:
        return self.kind.protocol


class BatchingConfig(_Frozen):
    """Dynamic batching in the gateway, per variant (see gateway/batching.py)."""

    max_batch_size: int = Field(default=32, ge=1)
    """Most rows (dim 0) in one runner call; a larger single request goes alone."""
    max_delay_ms: float = Field(default=0.0, ge=0)
    """How long a batch may wait to fill. 0: never wait; requests that arrive while a
    batch is in flight are batched anyway, so a lone client pays nothing."""
    adaptive_delay_ms: float = Field(default=2.0, ge=0)
    """With max_delay_ms 0, how long a batch may wait, under load only, for as many
    requests as recent batches had. A lone client (batches of one) never waits; under
    load fewer, fuller runner calls save CPU in the gateway and the runner. 0: off."""
    max_queue: int = Field(default=256, ge=1)
    """Requests waiting per variant; past it the gateway answers 429 / RESOURCE_EXHAUSTED."""


class LimitsConfig(_Frozen):
    """Admission bounds for every variant of the model (gateway/admission.py)."""

    max_concurrency: int = Field(ge=1)
    """Requests admitted and not yet answered, per variant; past it, 429 at once."""


class VersionPolicy(_Frozen):
    """Which numbered version folders are served (Triton's and TF Serving's policies):
    the `latest` N, `specific` ones, or `all`. Exactly one is given."""

    latest: int | None = Field(default=None, ge=1)
    specific: tuple[int, ...] | None = Field(default=None, min_length=1)
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        given = [self.latest is not None, self.specific is not None, self.all]
        if sum(given) != 1:
            raise ValueError("version_policy: give exactly one of latest, specific, all")
        return self

    def select(self, found: list[str]) -> list[str]:
        """The versions served, of those `found` on disk (in numeric order)."""
        ordered = sorted(found, key=int)
        if self.all:
            return ordered
        if self.latest is not None:
            return ordered[-self.latest :]
        wanted = {str(v) for v in self.specific or ()}
        return [v for v in ordered if v in wanted]


class ModelConfig(_Frozen):
    """A model folder's model.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    versions: tuple[str, ...] = ("1",)
    """Numbered version folders served; the last one is the default version. With a
    `version_policy` instead, the policy picks them from the folders on disk."""
    version_policy: VersionPolicy | None = None
    signature: Signature
    variants: dict[str, VariantConfig] = Field(min_length=1)
    routing: RoutingConfig
    """How a request that pins no variant is routed (gateway/router/config.py)."""
    circuit: CircuitConfig = CircuitConfig()
    """Each variant's circuit breaker."""
    faults: dict[str, FaultConfig] = Field(default_factory=dict)
    """Injected faults per variant (testing failover and hedging; admin can change them)."""
    batching: BatchingConfig | None = None
    """Dynamic batching for every variant of the model; absent: each request goes alone.
    Needs a batch dimension: every input and output shape starts with -1."""
    limits: LimitsConfig | None = None
    """Admission bounds; absent: the gateway's defaults (SERVEGATE_MAX_CONCURRENCY)."""
    default_timeout_ms: int | None = Field(default=None, gt=0)
    """Deadline of a request that carries none (no gRPC deadline, no `timeout`)."""

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
        check_names(self.routing, self.variants)
        check_fault_names(self.faults, self.variants)
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
    if raw.get("version_policy") is not None:
        if "versions" in raw:
            raise RepositoryError(f"{path}: give versions or version_policy, not both")
        found = [p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        policy = VersionPolicy.model_validate(raw["version_policy"])
        raw["versions"] = policy.select(found)
        if not raw["versions"]:
            raise RepositoryError(
                f"{path}: version_policy {policy.model_dump(exclude_defaults=True)} "
                f"selects none of the version folders found {sorted(found, key=int)}"
            )
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
