"""Fleet: one worker, a whole gateway on ports it shares with its siblings.

    python -m gateway.fleet.worker SPEC.json     (started by the primary, never by hand)

The spec file (mode 0600: it holds the settings, keys included) names the control socket
and this worker's index. The primary's welcome says what to serve: the models, where each
runner kind is reached, the runners' states, the routing and faults changed at run time.
From then on the worker serves, applies what the primary sends, and relays the changes its
own clients ask for. It stops on SIGTERM/SIGINT, or when the primary goes away.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway import eventloop
from gateway.config import Repository, Settings
from gateway.dataplane import DataPlane
from gateway.errors import Unavailable
from gateway.fleet.wire import Channel, error_doc, error_from, status_from
from gateway.lifecycle import Lifecycle, LocalModels, read_model
from gateway.server import Gateway, build_dataplane

log = logging.getLogger("servegate.fleet")


class PrimaryRelay:
    """Asks the primary to make a change in every worker; returns once it has."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def ask(self, action: str, **args: Any) -> None:
        ask_id = next(self._ids)
        answer = self._waiting[ask_id] = asyncio.get_running_loop().create_future()
        self._channel.send("ask", id=ask_id, action=action, args=args)
        try:
            await answer
        finally:
            self._waiting.pop(ask_id, None)

    def answered(self, ask_id: int, error: dict[str, Any] | None) -> None:
        answer = self._waiting.get(ask_id)
        if answer is None or answer.done():
            return
        exc = error_from(error)
        if exc is None:
            answer.set_result(None)
        else:
            answer.set_exception(exc)

    def fail_all(self) -> None:
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(Unavailable("the gateway's primary process has gone"))


class RelayedLifecycle:
    """The repository extension in a worker: the index is this worker's own, loads and
    unloads are the primary's (it has the runners)."""

    def __init__(self, local: Lifecycle, relay: PrimaryRelay) -> None:
        self._local = local
        self._relay = relay

    async def load(self, name: str) -> None:
        await self._relay.ask("load", name=name)

    async def unload(self, name: str) -> None:
        await self._relay.ask("unload", name=name)

    async def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        return await self._local.index(ready_only)


def _reach(doc: dict[str, list[str | None]]) -> dict[str, tuple[str, Path | None]]:
    return {kind: (str(e), Path(k) if k else None) for kind, (e, k) in doc.items()}


class Worker:
    """What one worker process runs, between the primary's welcome and its stop."""

    def __init__(self, settings: Settings, index: int, channel: Channel) -> None:
        self.settings = settings
        self.index = index
        self.channel = channel
        self.relay = PrimaryRelay(channel)
        self.dataplane: DataPlane | None = None
        self.models: LocalModels | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def build(self, welcome: dict[str, Any]) -> Gateway:
        """The gateway the welcome describes, not started yet."""
        root = self.settings.repository
        repository = Repository(root, {n: read_model(root, n) for n in welcome["models"]})
        reach = _reach(welcome["reach"])
        dataplane = build_dataplane(
            self.settings,
            repository,
            {kind: endpoint for kind, (endpoint, _) in reach.items()},
            key_files={kind: key for kind, (_, key) in reach.items() if key is not None},
        )
        # Worker 0 alone counts runner restarts, from those the welcome says happened
        # already (the counters of workers before it are still in the metrics files).
        dataplane.catalog.count_restarts = self.index == 0
        for doc in welcome["statuses"]:
            dataplane.catalog.baseline(status_from(doc))
            dataplane.runner_status(status_from(doc))
        for change in welcome["changes"]:
            self._change(dataplane, change["action"], change["args"])
        dataplane.on_stuck = lambda kind, reason: self.channel.send(
            "stuck", kind=kind, reason=reason
        )
        self.dataplane = dataplane
        self.models = LocalModels(dataplane, drain_s=self.settings.shutdown_grace_s)
        self.models.unloaded.update(welcome["unloaded"])
        local = Lifecycle(self.models, root, drain_s=self.settings.shutdown_grace_s)
        return Gateway(
            dataplane,
            self.settings,
            RelayedLifecycle(local, self.relay),
            relay=self.relay,
            reuse_port=True,
        )

    @staticmethod
    def _change(dataplane: DataPlane, action: str, args: dict[str, Any]) -> None:
        if action == "routing":
            dataplane.set_routing(args["model"], args["doc"])
        elif action == "fault":
            dataplane.set_fault(args["model"], args["variant"], args["doc"])
        else:
            raise ValueError(f"unknown change '{action}'")

    async def apply(self, action: str, args: dict[str, Any]) -> Any:
        """Carries out one of the primary's `apply` messages."""
        assert self.dataplane is not None and self.models is not None
        if action == "install":
            root = self.settings.repository
            model = read_model(root, args["name"])
            repository = Repository(root, {**self.dataplane.repository, model.name: model})
            await self.models.install(repository, model, _reach(args["reach"]))
        elif action == "remove":
            await self.models.remove(args["name"])
        elif action == "settle":
            await self.models.settle(args["name"])
        elif action == "ready":
            return await self.models.ready(args["name"])
        elif action == "variant_ready":
            return await self.dataplane.variant_ready(args["model"], args["variant"])
        else:
            self._change(self.dataplane, action, args)
        return None

    async def listen(self) -> None:
        """Handles the primary's messages until it closes the connection."""
        assert self.dataplane is not None
        while True:
            msg = await self.channel.receive()
            if msg is None:
                self.relay.fail_all()
                return
            op = msg["op"]
            if op == "status":
                self.dataplane.runner_status(status_from(msg["status"]))
            elif op == "answer":
                self.relay.answered(msg["id"], msg["error"])
            elif op == "apply":
                # Its own task: a settle drains for seconds; states must not wait for it.
                task = asyncio.create_task(self._apply(msg["id"], msg["action"], msg["args"]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _apply(self, apply_id: int, action: str, args: dict[str, Any]) -> None:
        try:
            value = await self.apply(action, args)
        except Exception as exc:
            self.channel.send("done", id=apply_id, error=error_doc(exc), value=None)
            return
        self.channel.send("done", id=apply_id, error=None, value=value)


async def run(spec: dict[str, Any]) -> None:
    settings = Settings.model_validate(spec["settings"])
    index = int(spec["index"])
    channel = await Channel.connect(spec["control"])
    channel.send("hello", index=index, pid=os.getpid())
    welcome = await channel.receive()
    if welcome is None or welcome["op"] != "welcome":
        raise SystemExit(f"worker {index}: no welcome from the primary")
    worker = Worker(settings, index, channel)
    gateway = worker.build(welcome)
    await gateway.start()
    channel.send("ready")
    log.info("worker %d (pid %d) serving", index, os.getpid())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    listening = asyncio.create_task(worker.listen())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait((listening, stopping), return_when=asyncio.FIRST_COMPLETED)
    if listening.done() and not stop.is_set():
        log.error("worker %d: the primary has gone; stopping", index)
    listening.cancel()
    await gateway.stop()
    channel.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = orjson.loads(Path(args[0]).read_bytes())
    settings = spec["settings"]
    logging.basicConfig(
        level=str(settings.get("log_level", "info")).upper(),
        format=f"%(asctime)s %(levelname)s %(name)s [worker {spec['index']}]: %(message)s",
    )
    eventloop.run(run(spec))


if __name__ == "__main__":
    main()
