"""A live model repository: a new version loaded and the old one unloaded under a client
loop loses no request and the answers switch over; the same when model.yaml's variant set
changes under --poll. Real onnx and jax runners, swapped blue/green by the supervisor."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from gateway import client
from gateway.config import DEFAULT_REPOSITORY, Repository, load_model, load_repository
from gateway.lifecycle import poll
from model_repo.builders import export_jax, export_onnx
from model_repo.builders.networks import MLP, load_network
from tests.live import LoadThreads, RunningStack, start_stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHIFT = 1000.0  # version 2 adds this to every logit: its answers are easy to tell apart

MODEL_YAML = """
versions: {versions}
signature:
  inputs: [{{name: pixels, datatype: FP32, shape: [-1, 64]}}]
  outputs: [{{name: logits, datatype: FP32, shape: [-1, 10]}}]
routing: {{default: onnx}}
batching: {{max_batch_size: 32, max_delay_ms: 0, max_queue: 256}}
variants:
{variants}
"""
VARIANTS = {
    "onnx": "  onnx: {runner: onnx, artifact: model.onnx}",
    "jax": "  jax: {runner: jax, artifact: model.jax}",
}


def write_yaml(folder: Path, versions: list[int], variants: list[str]) -> None:
    text = MODEL_YAML.format(versions=versions, variants="\n".join(VARIANTS[v] for v in variants))
    tmp = folder / "model.yaml.tmp"
    tmp.write_text(text)
    tmp.replace(folder / "model.yaml")


@pytest.fixture
def repo(repository: Repository, tmp_path: Path) -> Repository:
    """digits version 1 as built, and a version 2 whose logits are shifted by SHIFT."""
    folder = tmp_path / "repo" / "digits"
    (folder / "2").mkdir(parents=True)
    built = DEFAULT_REPOSITORY / "digits" / "1"
    shutil.copytree(built, folder / "1")
    write_yaml(folder, [1], ["onnx", "jax"])
    net = load_network(built)
    assert isinstance(net, MLP)
    *hidden, (w, b) = net.layers
    shifted = replace(net, layers=(*hidden, (w, b + SHIFT)))
    model = load_model(folder)
    export_onnx.export(shifted, model, folder / "2" / "model.onnx")
    export_jax.export(shifted, model, folder / "2" / "model.jax")
    shutil.copy(built / "samples.npz", folder / "2" / "samples.npz")
    return load_repository(tmp_path / "repo")


@pytest.fixture
def stack(repo: Repository, tmp_path: Path) -> Iterator[RunningStack]:
    s = start_stack(repo, ["onnx", "jax"], tmp_path / "run")
    yield s
    s.stop()


class Loop(LoadThreads):
    """Clients sending one digits sample over gRPC and HTTP until stopped; each answer
    is recorded as the version it came from (by its logits), or as a failure."""

    def __init__(self, stack: RunningStack, x: np.ndarray, variant: str = "onnx") -> None:
        self.stack, self.x, self.model = stack, x, f"digits@{variant}"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, str]] = []  # sent, "v1" / "v2" / failure text
        self.threads = [threading.Thread(target=self._grpc), threading.Thread(target=self._http)]

    def _record(self, sent: float, logits: np.ndarray | None, error: str = "") -> None:
        what = error or ("v2" if logits is not None and logits.max() > SHIFT / 2 else "v1")
        with self.lock:
            self.answers.append((sent, what))

    def _grpc(self) -> None:
        with grpc.insecure_channel(self.stack.grpc_address) as channel:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.infer_grpc(channel, self.model, {"pixels": self.x}, timeout=30)
                    self._record(sent, r.outputs[0].data)
                except client.ClientError as exc:
                    self._record(sent, None, str(exc))

    def _http(self) -> None:
        with client.http_client(self.stack.http_url, timeout=30) as http:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.infer_http(http, self.model, {"pixels": self.x}, binary=True)
                    self._record(sent, r.outputs[0].data)
                except (client.ClientError, httpx.HTTPError) as exc:
                    self._record(sent, None, str(exc))

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def failures(self) -> list[str]:
        return [a for _, a in self.answers if a not in ("v1", "v2")]


def load(stack: RunningStack, name: str) -> float:
    """Loads `name` through the repository extension; returns when the load answered."""
    reply = httpx.post(f"{stack.http_url}/v2/repository/models/{name}/load", timeout=300)
    assert reply.status_code == 200, reply.text
    return time.monotonic()


def test_a_new_version_swaps_in_and_the_old_one_out_without_a_failed_request(
    stack: RunningStack, repo: Repository, digits: dict[str, np.ndarray]
) -> None:
    folder = repo.folder("digits")
    first_onnx = stack.supervisor.runners["onnx"].pid
    with Loop(stack, digits["inputs"][:1]) as loop:
        wait_for(lambda: loop.count() >= 300, 60, "answers from version 1")
        write_yaml(folder, [1, 2], ["onnx", "jax"])  # version 2 becomes the latest
        asked = time.monotonic()
        loaded = load(stack, "digits")
        wait_for(lambda: loop.count() >= 600, 120, "answers after the swap")
        write_yaml(folder, [2], ["onnx", "jax"])  # and version 1 goes
        unloaded_v1 = load(stack, "digits")
        wait_for(lambda: loop.count() >= 900, 120, "answers after version 1 went")
    assert loop.failures() == []
    before = [a for sent, a in loop.answers if sent < asked]
    after = [a for sent, a in loop.answers if sent > loaded]
    assert before and set(before) == {"v1"}
    assert after and set(after) == {"v2"}  # every request sent after the swap: version 2
    print(
        f"\nswap: {len(loop.answers)} requests, 0 failed; load took {loaded - asked:.1f} s; "
        f"{len(after)} sent after it, all answered by version 2"
    )
    assert stack.supervisor.runners["onnx"].pid != first_onnx  # served by a fresh runner
    meta = httpx.get(f"{stack.http_url}/v2/models/digits", timeout=10).json()
    assert meta["versions"] == ["2"]
    gone = httpx.post(
        f"{stack.http_url}/v2/models/digits/versions/1/infer",
        json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                          "data": digits["inputs"][0].tolist()}]},
        timeout=30,
    )  # fmt: skip
    assert gone.status_code == 404 and unloaded_v1 > loaded
    index = httpx.post(f"{stack.http_url}/v2/repository/index", timeout=10).json()
    assert index == [{"name": "digits", "version": "2", "state": "READY"}]


def test_a_bad_model_yaml_changes_nothing_and_says_why(
    stack: RunningStack, repo: Repository
) -> None:
    (repo.folder("digits") / "model.yaml").write_text("signature: {inputs: []}\n")
    reply = httpx.post(f"{stack.http_url}/v2/repository/models/digits/load", timeout=60)
    assert reply.status_code == 400 and "model.yaml has errors" in reply.json()["error"]
    assert httpx.get(f"{stack.http_url}/v2/models/digits/ready", timeout=10).status_code == 200


def test_unload_drains_then_404_and_load_brings_it_back(
    stack: RunningStack, digits: dict[str, np.ndarray]
) -> None:
    reply = httpx.post(f"{stack.http_url}/v2/repository/models/digits/unload", timeout=60)
    assert reply.status_code == 200
    assert httpx.get(f"{stack.http_url}/v2/models/digits", timeout=10).status_code == 404
    index = httpx.post(f"{stack.http_url}/v2/repository/index", timeout=10).json()
    assert index == [{"name": "digits", "state": "UNAVAILABLE", "reason": "unloaded"}]
    load(stack, "digits")
    with grpc.insecure_channel(stack.grpc_address) as channel:
        r = client.infer_grpc(channel, "digits", {"pixels": digits["inputs"][:1]})
    np.testing.assert_allclose(r.outputs[0].data, digits["logits"][:1], rtol=0, atol=1e-4)


def test_the_variant_set_changes_under_poll_without_a_failed_request(
    stack: RunningStack, repo: Repository, digits: dict[str, np.ndarray]
) -> None:
    folder = repo.folder("digits")
    watcher = stack.call(_start_poll(stack))
    try:
        with Loop(stack, digits["inputs"][:1]) as loop:
            wait_for(lambda: loop.count() >= 200, 60, "answers before the change")
            write_yaml(folder, [1], ["onnx"])  # jax goes
            wait_for(lambda: _variants(stack) == ["onnx"], 120, "the poll to drop jax")
            wait_for(lambda: loop.count() >= 400, 60, "answers after it")
            write_yaml(folder, [1], ["onnx", "jax"])  # and comes back
            wait_for(lambda: _variants(stack) == ["jax", "onnx"], 120, "jax back")
            wait_for(lambda: loop.count() >= 600, 60, "answers after that")
    finally:
        stack.loop.call_soon_threadsafe(watcher.cancel)
    assert loop.failures() == []
    with grpc.insecure_channel(stack.grpc_address) as channel:
        r = client.infer_grpc(channel, "digits@jax", {"pixels": digits["inputs"][:1]})
    np.testing.assert_allclose(r.outputs[0].data, digits["logits"][:1], rtol=0, atol=1e-4)


async def _start_poll(stack: RunningStack) -> asyncio.Task[None]:
    return asyncio.create_task(poll(stack.lifecycle, 0.2))


def _variants(stack: RunningStack) -> list[str]:
    meta = httpx.get(f"{stack.http_url}/v2/models/digits", timeout=10).json()
    return sorted(v["name"] for v in meta["variants"])
