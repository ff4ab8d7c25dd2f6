"""Fleet: the primary, which keeps N workers serving on shared ports and agreeing.

`Fleet.start` reserves the ports (port 0 becomes a free one, held for the fleet's life),
opens the control socket, starts the workers and returns once every one is serving.
Each worker is kept alive like a runner: one that exits is started again after a backoff,
welcomed with the state the others have. `lifecycle` loads and unloads models for the
whole fleet: the runners' blue/green is the supervisor's, as in one gateway, and every
worker swaps the model in before the load returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from gateway.config import ModelConfig, Repository, Settings
from gateway.errors import GatewayError
from gateway.fleet.wire import Channel, error_doc, error_from, status_doc
from gateway.health import RunnerStatus
from gateway.lifecycle import Lifecycle, Reach
from gateway.supervisor import Supervisor

log = logging.getLogger("servegate.fleet")

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
READY_TIMEOUT_S = 120.0
BACKOFF_S = (0.5, 30.0)


class _Member:
    """A connected worker."""

    def __init__(self, index: int, pid: int, channel: Channel) -> None:
        self.index = index
        self.pid = pid
        self.channel = channel
        self.ready = asyncio.Event()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}


class FleetModels:
    """lifecycle.Models for a fleet: every change is made in every worker."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self.unloaded: set[str] = set()

    @property
    def repository(self) -> Repository:
        return self._fleet.repository

    async def install(self, repository: Repository, model: ModelConfig, reach: Reach) -> None:
        wire = {kind: [e, str(k) if k else None] for kind, (e, k) in reach.items()}
        await self._fleet.broadcast("install", repository=repository, name=model.name, reach=wire)
        self.unloaded.discard(model.name)

    async def remove(self, name: str) -> None:
        models = {k: v for k, v in self._fleet.repository.items() if k != name}
        repository = Repository(self._fleet.repository.root, models)
        await self._fleet.broadcast("remove", repository=repository, name=name)
        self.unloaded.add(name)

    async def settle(self, name: str) -> None:
        await self._fleet.broadcast("settle", name=name)

    async def ready(self, name: str) -> bool:
        return all(await self._fleet.broadcast("ready", name=name))


class Fleet:
    """The primary of `workers` gateway processes over one repository and one supervisor."""

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        workdir: Path,
        *,
        workers: int,
        supervisor: Supervisor | None = None,
        endpoints: Mapping[str, str] | None = None,
        key_files: Mapping[str, Path] | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.workdir = workdir
        self.workers = workers
        self.supervisor = supervisor
        self._models = FleetModels(self)
        self.lifecycle = Lifecycle(
            self._models,
            repository.root,
            runners=supervisor,
            drain_s=settings.shutdown_grace_s,
        )
        key_files = key_files or {}
        self._reach: dict[str, tuple[str, Path | None]] = {
            kind: (e, key_files.get(kind)) for kind, e in (endpoints or {}).items()
        }
        self._statuses: dict[str, RunnerStatus] = {}
        self._changes: dict[tuple[str, ...], dict[str, Any]] = {}
        self._members: dict[int, _Member] = {}
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._keepers: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._change_lock = asyncio.Lock()
        self._reserved: list[socket.socket] = []
        self._server: asyncio.AbstractServer | None = None
        self._stopping = False
        self._served: set[int] = set()  # workers that served once: restarted when they die
        self.http_port = settings.http_port
        self.grpc_port = settings.grpc_port

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for _, p in sorted(self._procs.items()) if p.returncode is None]

    async def start(self) -> None:
        """Starts every worker; returns when all serve (RuntimeError if one cannot)."""
        self.http_port = self._reserve(self.settings.http_port)
        self.grpc_port = self._reserve(self.settings.grpc_port)
        metrics = self.workdir / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        control = self.workdir / "control.sock"
        self._server = await asyncio.start_unix_server(self._connected, str(control))
        settings = self.settings.model_copy(
            update={"http_port": self.http_port, "grpc_port": self.grpc_port}
        )
        if self.supervisor is not None:
            for kind in self.supervisor.runners:
                self._status(self.supervisor.status(kind))
            self.supervisor.watch(self._status)
        for index in range(self.workers):
            spec = self.workdir / f"worker-{index}.json"
            spec.touch(mode=0o600)
            spec.write_bytes(orjson.dumps(_spec(settings, index, control)))
            self._keepers.append(asyncio.create_task(self._keep(index, spec, metrics)))
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while len(self._members) < self.workers or not all(
                    m.ready.is_set() for m in self._members.values()
                ):
                    if any(k.done() for k in self._keepers):
                        raise RuntimeError("a worker could not start; see its log above")
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise RuntimeError(f"the workers did not start in {READY_TIMEOUT_S:g} s") from None

    def _reserve(self, port: int) -> int:
        """`port`, or a free one for 0, held (bound, never listening) with SO_REUSEPORT so
        that the workers can bind it and nobody else takes it meanwhile."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.settings.host, port))
        self._reserved.append(sock)
        return int(sock.getsockname()[1])

    async def _keep(self, index: int, spec: Path, metrics: Path) -> None:
        """Runs worker `index`, and again each time it exits, until the fleet stops."""
        backoff = BACKOFF_S[0]
        env = {**os.environ, METRICS_ENV: str(metrics)}
        while not self._stopping:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.fleet.worker", str(spec), env=env
            )
            self._procs[index] = proc
            code = await proc.wait()
            _forget_metrics(proc.pid, metrics)
            if self._stopping:
                return
            if index not in self._served:
                log.error("worker %d exited with %s before it served", index, code)
                return  # a start-up error (a port taken, a bad setting): the same each time
            if time.monotonic() - started > 60:
                backoff = BACKOFF_S[0]
            log.error(
                "worker %d (pid %d) exited with %s; starting it again in %.1f s",
                index, proc.pid, code, backoff,
            )  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer)
        hello = await channel.receive()
        if hello is None or hello["op"] != "hello":
            channel.close()
            return
        member = _Member(int(hello["index"]), int(hello["pid"]), channel)
        # The welcome and every later broadcast reach this worker in that order: nothing
        # awaits between the snapshot and joining the members.
        channel.send("welcome", **self._welcome())
        self._members[member.index] = member
        try:
            await self._listen(member)
        finally:
            if self._members.get(member.index) is member:
                del self._members[member.index]
            for waiting in member.pending.values():
                if not waiting.done():  # it will be welcomed with the change if it returns
                    waiting.set_result({"error": None, "value": True})
            channel.close()

    def _welcome(self) -> dict[str, Any]:
        return {
            "models": list(self.repository),
            "unloaded": sorted(self._models.unloaded),
            "reach": {k: [e, str(f) if f else None] for k, (e, f) in self._reach.items()},
            "statuses": [status_doc(s) for s in self._statuses.values()],
            "changes": list(self._changes.values()),
        }

    async def _listen(self, member: _Member) -> None:
        while (msg := await member.channel.receive()) is not None:
            op = msg["op"]
            if op == "ready":
                member.ready.set()
                self._served.add(member.index)
            elif op == "done":
                waiting = member.pending.pop(msg["id"], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(msg)
            elif op == "stuck":
                if self.supervisor is not None:
                    self.supervisor.restart(msg["kind"], msg["reason"])
            elif op == "ask":
                task = asyncio.create_task(self._answer(member, msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, member: _Member, msg: dict[str, Any]) -> None:
        try:
            await self._carry_out(msg["action"], msg["args"])
        except Exception as exc:
            member.channel.send("answer", id=msg["id"], error=error_doc(exc))
            return
        member.channel.send("answer", id=msg["id"], error=None)

    async def _carry_out(self, action: str, args: dict[str, Any]) -> None:
        """A change a worker's client asked for, made in every worker."""
        if action == "load":
            await self.lifecycle.load(str(args["name"]))
        elif action == "unload":
            await self.lifecycle.unload(str(args["name"]))
        elif action in ("routing", "fault"):
            async with self._change_lock:
                await self.broadcast(action, **args)
        else:
            raise GatewayError(f"unknown fleet action '{action}'")

    async def broadcast(
        self, action: str, *, repository: Repository | None = None, **args: Any
    ) -> list[Any]:
        """Has every worker carry out `action`; returns their values, raises the first
        error. What a worker that starts later must know is kept for its welcome."""
        if repository is not None:
            self.repository = repository
        self._remember(action, args)
        waits = []
        for member in list(self._members.values()):
            apply_id = next(self._ids)
            waiting = member.pending[apply_id] = asyncio.get_running_loop().create_future()
            member.channel.send("apply", id=apply_id, action=action, args=args)
            waits.append(waiting)
        replies = await asyncio.gather(*waits)
        errors = [e for e in (error_from(r["error"]) for r in replies) if e is not None]
        if errors:
            raise errors[0]
        return [r.get("value") for r in replies]

    def _remember(self, action: str, args: dict[str, Any]) -> None:
        if action == "routing":
            self._changes[("routing", args["model"])] = {"action": action, "args": args}
        elif action == "fault":
            key = ("fault", args["model"], args["variant"])
            self._changes[key] = {"action": action, "args": args}
        elif action in ("install", "remove"):  # a model (re)loaded reads model.yaml anew
            self._changes = {k: v for k, v in self._changes.items() if k[1] != args["name"]}

    def _status(self, status: RunnerStatus) -> None:
        """The supervisor's word on a runner, for every worker now and every later one."""
        self._statuses[status.kind] = status
        if status.endpoint:
            self._reach[status.kind] = (status.endpoint, status.key_file)
        for member in self._members.values():
            member.channel.send("status", status=status_doc(status))

    async def variant_ready(self, model: str, variant: str) -> bool:
        """Whether every worker can serve `variant` of `model` now."""
        return all(await self.broadcast("variant_ready", model=model, variant=variant))

    async def stop(self) -> None:
        """SIGTERM to every worker (each drains as one gateway does), then waits."""
        self._stopping = True
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        grace = self.settings.shutdown_grace_s + self.settings.drain_delay_s + 5
        for proc in self._procs.values():
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.error("worker pid %d did not stop in %.0f s; killing it", proc.pid, grace)
                proc.kill()
                await proc.wait()
        for task in [*self._keepers, *self._tasks]:
            task.cancel()
        if self._server is not None:
            self._server.close()
        for sock in self._reserved:
            sock.close()


def _spec(settings: Settings, index: int, control: Path) -> dict[str, Any]:
    """What a worker is started with: every setting (keys too: the file is 0600)."""
    doc = settings.model_dump(mode="json")
    doc["infer_keys"] = settings.infer_keys.get_secret_value()
    doc["admin_keys"] = settings.admin_keys.get_secret_value()
    return {"settings": doc, "index": index, "control": str(control)}


def _forget_metrics(pid: int, folder: Path) -> None:
    """A dead worker's live gauges leave the metrics (its counters stay: they happened)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(folder))
