"""Lifecycle: the model repository extension: index, load and unload, losing no request.

Loading reads the model's folder again (model.yaml, and the version folders its version
policy picks), starts fresh instances of the local runners that serve it beside the
serving ones (they read the repository as it is now: new versions, new variants), and
only when they are ready swaps the model in the dataplane in one step: requests already
on their way finish on the old variants and the old runners, new ones go to the new.
Then the old variants drain and close, and the old runners retire. Unloading stops
taking requests for the model (404), then drains what is in flight. One change at a
time; a model.yaml with errors changes nothing and says what is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from gateway.catalog import ServedModel
from gateway.config import ModelConfig, Repository, RepositoryError, load_model
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, ModelNotFound

Reach = Mapping[str, tuple[str, Path | None]]
"""runner kind -> (endpoint, key file) of the fresh runners a load started."""

log = logging.getLogger("servegate.lifecycle")


class RepositoryControl(Protocol):
    """The repository extension as the front ends call it: a Lifecycle, or a fleet
    worker's relay to its primary."""

    async def load(self, name: str) -> None: ...

    async def unload(self, name: str) -> None: ...

    async def index(self, ready_only: bool = False) -> list[dict[str, str]]: ...


class Relay(Protocol):
    """Where a fleet worker sends the changes its clients ask for (load, unload, routing,
    faults): its primary carries each out in every worker, then answers."""

    async def ask(self, action: str, **args: Any) -> None: ...


class Runners(Protocol):
    """The local runners' blue/green (the supervisor implements it)."""

    kinds_served: Collection[str]

    async def prepare(self, kinds: Collection[str], repository: Repository) -> Mapping[str, Any]:
        """Fresh runners for `kinds`, ready, serving nothing yet."""

    def reach(self, fresh: Mapping[str, Any]) -> dict[str, tuple[str, Path | None]]:
        """kind -> (endpoint, key file) of each fresh runner."""

    def commit(
        self, fresh: Mapping[str, Any], repository: Repository, retire_after_s: float
    ) -> None:
        """The fresh runners serve from now on; the old ones retire after a while."""

    async def discard(self, fresh: Mapping[str, Any]) -> None:
        """Stops fresh runners that will not serve after all."""


class Models(Protocol):
    """Where a load or an unload takes effect: this process's dataplane (LocalModels), or
    every worker's (gateway/fleet)."""

    @property
    def repository(self) -> Repository:
        """The models served now."""

    @property
    def unloaded(self) -> set[str]:
        """The models unloaded (and not loaded again) since the start."""

    async def install(self, repository: Repository, model: ModelConfig, reach: Reach) -> None:
        """Serves `model` (as `repository` has it) from now on, in one step; what it
        replaces keeps the requests already on their way."""

    async def remove(self, name: str) -> None:
        """Stops taking requests for model `name` (404); those on their way go on."""

    async def settle(self, name: str) -> None:
        """Drains and closes what the installs and removals of `name` replaced."""

    async def ready(self, name: str) -> bool:
        """Whether model `name` can serve now."""


class LocalModels:
    """Models served by one DataPlane: swapped in one step, drained up to `drain_s`."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        drain_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dataplane = dataplane
        self.drain_s = drain_s
        self._clock = clock
        self._replaced: dict[str, list[ServedModel]] = {}
        self.unloaded: set[str] = set()

    @property
    def repository(self) -> Repository:
        return self.dataplane.repository

    async def install(self, repository: Repository, model: ModelConfig, reach: Reach) -> None:
        self._keep(model.name, self.dataplane.install(repository, model, reach))
        self.unloaded.discard(model.name)

    async def remove(self, name: str) -> None:
        self._keep(name, self.dataplane.remove(name))
        self.unloaded.add(name)

    def _keep(self, name: str, old: ServedModel | None) -> None:
        if old is not None:
            self._replaced.setdefault(name, []).append(old)

    async def settle(self, name: str) -> None:
        """Waits (up to drain_s) for the requests still in the replaced variants, then
        closes them."""
        until = self._clock() + self.drain_s
        for old in self._replaced.pop(name, []):
            for served in old.variants.values():
                if not await served.drained(max(until - self._clock(), 0.0)):
                    log.warning(
                        "%s: %d request(s) still in flight at close", served.key, served.active
                    )
            await old.aclose()

    async def ready(self, name: str) -> bool:
        return await self.dataplane.model_ready(name)


def read_model(root: Path, name: str) -> ModelConfig:
    """A model folder's configuration; BadRequest naming every problem when invalid."""
    folder = root / name
    if not (folder / "model.yaml").is_file():
        raise ModelNotFound(f"no model '{name}' in the repository (no {name}/model.yaml)")
    try:
        model = load_model(folder)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"model '{name}': model.yaml has errors: {problems}") from None
    except (RepositoryError, ValueError, OSError) as exc:
        raise BadRequest(f"model '{name}': {exc}") from None
    if model.name != name:
        raise BadRequest(f"model '{name}': model.yaml names it '{model.name}'")
    return model


class Lifecycle:
    """Loads and unloads the models of one repository folder in a running gateway."""

    def __init__(
        self,
        models: Models,
        root: Path,
        *,
        runners: Runners | None = None,
        drain_s: float = 30.0,
    ) -> None:
        self.models = models
        self.root = root
        self.runners = runners
        self.drain_s = drain_s
        self._lock = asyncio.Lock()

    @classmethod
    def local(
        cls,
        dataplane: DataPlane,
        root: Path,
        *,
        runners: Runners | None = None,
        drain_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Lifecycle:
        """The lifecycle of one process's dataplane (every gateway but a fleet's primary)."""
        models = LocalModels(dataplane, drain_s=drain_s, clock=clock)
        return cls(models, root, runners=runners, drain_s=drain_s)

    async def load(self, name: str) -> None:
        """(Re)loads model `name` from its folder; see the module docstring."""
        async with self._lock:
            model = read_model(self.root, name)
            repository = Repository(self.root, {**self.models.repository, name: model})
            kinds = {
                v.runner
                for v in model.variants.values()
                if not v.endpoint
                and self.runners is not None
                and v.runner in self.runners.kinds_served
            }
            fresh: Mapping[str, Any] = {}
            if kinds and self.runners is not None:
                fresh = await self.runners.prepare(sorted(kinds), repository)
            try:
                reach = self.runners.reach(fresh) if self.runners is not None else {}
                await self.models.install(repository, model, reach)
            except BaseException:
                if self.runners is not None and fresh:
                    await self.runners.discard(fresh)
                raise
            if self.runners is not None and fresh:
                self.runners.commit(fresh, repository, retire_after_s=self.drain_s)
            log.warning("model %s loaded: versions %s", name, list(model.versions))
        await self.models.settle(name)

    async def unload(self, name: str) -> None:
        """Stops serving model `name` (404 from now on) once its requests are answered."""
        async with self._lock:
            if name not in self.models.repository:
                raise ModelNotFound(f"model '{name}' is not loaded")
            await self.models.remove(name)
            log.warning("model %s unloaded", name)
        await self.models.settle(name)

    async def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """The repository index: every model folder, loaded (READY, or why not) or not."""
        entries: list[dict[str, str]] = []
        folders = sorted(p.name for p in self.root.iterdir() if (p / "model.yaml").is_file())
        for name in folders:
            model = self.models.repository.get(name)
            if model is None:
                reason = "unloaded" if name in self.models.unloaded else "not loaded"
                entries.append({"name": name, "state": "UNAVAILABLE", "reason": reason})
                continue
            ready = await self.models.ready(name)
            entry = {"name": name, "version": model.latest_version}
            entry |= {"state": "READY"} if ready else {"state": "UNAVAILABLE", "reason": (
                f"its default variant '{model.routing.default}' is not ready"
            )}  # fmt: skip
            entries.append(entry)
        return [e for e in entries if e["state"] == "READY"] if ready_only else entries


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What a change to a model folder changes: model.yaml and every file of its version
    folders, by path, size and modification time."""
    files = [folder / "model.yaml"]
    for version in folder.iterdir():
        if version.is_dir() and version.name.isdigit():
            files += [p for p in version.rglob("*") if p.is_file()]
    out = []
    for path in sorted(files):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return tuple(out)


async def poll(lifecycle: Lifecycle, every_s: float) -> None:
    """`servegate up --poll`: every `every_s`, loads each model whose folder changed (or
    appeared) and unloads each whose model.yaml is gone. A load that fails (model.yaml
    with errors) is logged and leaves the model as it was; it is tried again once the
    folder changes again."""
    root = lifecycle.root

    def scan() -> dict[str, tuple[tuple[str, int, int], ...]]:
        return {
            p.name: fingerprint(p) for p in sorted(root.iterdir()) if (p / "model.yaml").is_file()
        }

    seen = await asyncio.to_thread(scan)
    while True:
        await asyncio.sleep(every_s)
        now = await asyncio.to_thread(scan)
        for name in sorted(set(now) | set(seen)):
            if now.get(name) == seen.get(name):
                continue
            try:
                if name not in now:
                    if name in lifecycle.models.repository:
                        await lifecycle.unload(name)
                else:
                    await lifecycle.load(name)
            except Exception as exc:
                log.error("repository poll: model %s not (re)loaded: %s", name, exc)
        seen = now
