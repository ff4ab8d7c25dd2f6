"""The real TorchServe 0.12 behind the gateway: the `pytorch` variants, end to end.

TorchServe (Java frontend + Python workers running our handler) is started by the
Supervisor; the gateway runs in-process. Outputs are held to the float64 reference in
samples.npz: 1e-4 absolute for digits and for resnet18 (TorchScript float32 measured
within 2e-6 of it on this CPU). The repository's archives leave TorchServe's batching off
(the gateway batches). The batching and worker-kill tests run twice, each time on a
TorchServe of their own serving digits alone: with the repository's archive (batch_size 1)
and re-archived with batch_size 8, so that a worker restart lands in no other test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import psutil
import pytest
import yaml

from gateway import client
from gateway.backends.torchserve import TorchServeBackend
from gateway.backends.torchserve_keys import read_keys
from gateway.config import Repository, load_repository
from gateway.errors import Unavailable
from gateway.protocol import torchserve_framing as framing
from gateway.protocol.pb import torchserve_pb2 as pb
from gateway.supervisor import Supervisor
from gateway.supervisor.torchserve import TorchServeRunner
from gateway.tensors import InferRequest, Tensor, decode_raw
from tests.live import LiveRunners, LoadThreads, RunningGateway, infer, samples, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATOL = 1e-4
PREDICTIONS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
DEADLINE_S = 10.0  # the kill test's gateway deadline (Settings.default_timeout_s)


@pytest.fixture(scope="module")
def ts_keys(runners: LiveRunners, ts_endpoint: str) -> Path:
    """The key file of the session's TorchServe (its token authorization is on)."""
    return runners.key_files()["torchserve"]


def bearer(key_file: Path, kind: str = "inference") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {read_keys(key_file)[kind]}"),)


@pytest.fixture(scope="module")
def ts_endpoint(runners: Callable[[str], str]) -> str:
    """TorchServe's gRPC inference address (started once per session by the Supervisor)."""
    return runners("torchserve")


@pytest.fixture(scope="module")
def ts_gateway(gateway_over: Callable[[str], RunningGateway]) -> RunningGateway:
    """A gateway whose only runner is TorchServe."""
    return gateway_over("torchserve")


@pytest.mark.parametrize("protocol", client.PROTOCOLS)
def test_digits_equal_the_reference_logits(
    ts_gateway: RunningGateway, digits: dict[str, np.ndarray], protocol: str
) -> None:
    x = digits["inputs"]
    got = infer(ts_gateway, protocol, "digits@pytorch", {"pixels": x}).outputs[0].data
    assert got.shape == (450, 10)
    np.testing.assert_allclose(got, digits["logits"], rtol=0, atol=ATOL)


def test_resnet18_equals_the_reference_logits(
    ts_gateway: RunningGateway, repository: Repository
) -> None:
    ref = samples(repository, "resnet18")
    got = infer(ts_gateway, "binary", "resnet18@pytorch", {"image": ref["inputs"]}).outputs[0].data
    assert got.shape == (8, 1000)
    np.testing.assert_allclose(got, ref["logits"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_held_out_accuracy_equals_the_builders_figure(
    ts_gateway: RunningGateway,
    repository: Repository,
    digits: dict[str, np.ndarray],
    protocol: str,
) -> None:
    record = json.loads((repository.version_folder("digits") / "build.json").read_text())
    x = digits["inputs"]
    chunks = [
        infer(ts_gateway, protocol, "digits@pytorch", {"pixels": x[i : i + 64]}).outputs[0].data
        for i in range(0, len(x), 64)
    ]
    predicted = np.concatenate(chunks).argmax(axis=1)
    assert len(predicted) == record["test_samples"]
    assert float((predicted == digits["labels"]).mean()) == record["test_accuracy"]


def test_gateway_answer_equals_torchserves_own(
    ts_gateway: RunningGateway, ts_endpoint: str, ts_keys: Path, digits: dict[str, np.ndarray]
) -> None:
    x = np.ascontiguousarray(digits["inputs"][:5])
    request = pb.PredictionsRequest(
        model_name="digits", input={"pixels": framing.frame("FP32", x.shape, x.tobytes())}
    )
    with grpc.insecure_channel(ts_endpoint) as channel:
        reply = channel.unary_unary(PREDICTIONS)(
            request.SerializeToString(), timeout=10, metadata=bearer(ts_keys)
        )
    (datatype, shape, raw) = framing.unbundle(pb.PredictionResponse.FromString(reply).prediction)[
        "logits"
    ]
    direct = decode_raw(datatype, shape, raw)
    got = infer(ts_gateway, "binary", "digits@pytorch", {"pixels": x}).outputs[0].data
    np.testing.assert_array_equal(got, direct)


def test_torchserve_runs_with_token_authorization_on(ts_endpoint: str, ts_keys: Path) -> None:
    """Nobody but the gateway (which holds the key) can call our TorchServe."""
    request = pb.PredictionsRequest(model_name="digits", input={"pixels": b"x"})
    for metadata in ((), (("authorization", "Bearer wrong"),), bearer(ts_keys, "management")):
        with grpc.insecure_channel(ts_endpoint) as channel, pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(PREDICTIONS)(
                request.SerializeToString(), timeout=10, metadata=metadata
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def test_our_handler_refuses_malformed_frames_as_invalid_argument(
    ts_endpoint: str, ts_keys: Path
) -> None:
    request = pb.PredictionsRequest(model_name="digits", input={"pixels": b"not a frame"})
    with grpc.insecure_channel(ts_endpoint) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(PREDICTIONS)(
            request.SerializeToString(), timeout=10, metadata=bearer(ts_keys)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "bad magic" in info.value.details()  # type: ignore[attr-defined]


async def test_unknown_model_or_version_is_unavailable_not_internal(
    ts_endpoint: str, ts_keys: Path, digits: dict[str, np.ndarray]
) -> None:
    """TorchServe answers INTERNAL for both; for the gateway the variant cannot serve them."""
    x = Tensor.from_numpy("pixels", digits["inputs"][:1])
    missing = TorchServeBackend(
        "nope@pytorch", ts_endpoint, "nope", max_message_bytes=1 << 20, key_file=ts_keys
    )
    present = TorchServeBackend(
        "digits@pytorch", ts_endpoint, "digits", max_message_bytes=1 << 20, key_file=ts_keys
    )
    try:
        with pytest.raises(Unavailable, match="Model not found"):
            await missing.infer(InferRequest("nope", (x,)), deadline=time.monotonic() + 5)
        assert not await missing.ready()
        # Marked down now: refused at once, without queueing in TorchServe.
        with pytest.raises(Unavailable, match="no live worker"):
            await missing.infer(InferRequest("nope", (x,)), deadline=time.monotonic() + 5)
        assert await present.ready()
        with pytest.raises(Unavailable, match="does not exist"):
            await present.infer(
                InferRequest("digits", (x,), model_version="7"), deadline=time.monotonic() + 5
            )
        ok = await present.infer(InferRequest("digits", (x,)), deadline=time.monotonic() + 5)
        np.testing.assert_allclose(ok.outputs[0].data, digits["logits"][:1], rtol=0, atol=ATOL)
    finally:
        await missing.aclose()
        await present.aclose()


class FakeContext:
    """The part of TorchServe's Context our handler uses, read from an extracted .mar."""

    def __init__(self, model_dir: Path) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
        self.model_yaml_config = yaml.safe_load((model_dir / "model-config.yaml").read_text())
        self.content_types: dict[int, str] = {}

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value


def test_handler_runs_a_batch_once_and_splits_it_back(
    repository: Repository, digits: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """In-process, as TorchServe's worker calls it: gRPC maps and a REST body in one batch."""
    from runners.torchserve import handler

    with zipfile.ZipFile(repository.version_folder("digits") / "model.mar") as mar:
        mar.extractall(tmp_path)
    ctx = FakeContext(tmp_path)
    model = handler.Model.load(ctx)
    x = digits["inputs"]

    def frame(rows: np.ndarray) -> bytes:
        return framing.frame("FP32", rows.shape, np.ascontiguousarray(rows).tobytes())

    batch = [
        {"pixels": bytearray(frame(x[0:2]))},
        {"body": bytearray(framing.bundle({"pixels": frame(x[2:5])}))},
        {"pixels": bytearray(frame(x[5:6]))},
    ]
    calls: list[int] = []
    scripted = model.module

    def counting(*args: Any) -> Any:
        calls.append(args[0].shape[0])
        return scripted(*args)

    model.module = counting  # type: ignore[assignment]
    out = model(batch)
    assert calls == [6]  # one forward over all rows of the batch
    for answer, (lo, hi) in zip(out, [(0, 2), (2, 5), (5, 6)], strict=True):
        datatype, shape, raw = framing.unbundle(answer)["logits"]
        got = decode_raw(datatype, shape, raw)
        np.testing.assert_allclose(got, digits["logits"][lo:hi], rtol=0, atol=ATOL)


# --- Its own TorchServe, digits only: the repository's archive, and one with batching ----

BATCH_SIZES = {"batch_size_1": 1, "batch_size_8": 8}


def digits_repo(repository: Repository, root: Path, batch_size: int) -> Repository:
    """A repository of digits alone; batch_size 1 is the repository's own archive."""
    source = repository.folder("digits")
    if batch_size == 1:
        (root / "digits").symlink_to(source, target_is_directory=True)
        return load_repository(root)
    from model_repo.builders import export_torch
    from model_repo.builders.networks import load_network

    doc = yaml.safe_load((source / "model.yaml").read_text())
    doc["variants"]["pytorch"]["settings"] = {
        "threads": 1,
        "batch_size": batch_size,
        "max_batch_delay_ms": 20,
    }
    (root / "digits" / "1").mkdir(parents=True)
    (root / "digits" / "model.yaml").write_text(yaml.safe_dump(doc))
    for name in ("weights.npz", "samples.npz", "build.json"):
        shutil.copy(source / "1" / name, root / "digits" / "1" / name)
    repo = load_repository(root)
    mar = repo.version_folder("digits") / "model.mar"
    export_torch.export(load_network(mar.parent), repo["digits"], mar)
    return repo


@dataclass
class OwnTorchServe:
    runner: TorchServeRunner
    repository: Repository
    batch_size: int


@pytest.fixture(scope="module", params=list(BATCH_SIZES))
def own_torchserve(
    request: pytest.FixtureRequest,
    repository: Repository,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OwnTorchServe]:
    batch_size = BATCH_SIZES[request.param]
    repo = digits_repo(repository, tmp_path_factory.mktemp("ts-repo"), batch_size)
    sup = Supervisor(repo, tmp_path_factory.mktemp("ts-own"))
    asyncio.run(sup.start(["torchserve"]))
    runner = sup.runners["torchserve"]
    assert isinstance(runner, TorchServeRunner)
    yield OwnTorchServe(runner, repo, batch_size)
    seen = runner.processes()
    sup.stop()
    assert seen, "no TorchServe processes were seen"
    left = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left after stop: {left}"
    assert not runner.alive()


def the_worker(runner: TorchServeRunner) -> psutil.Process:
    """The Python worker: a child of the Java frontend (guard -> launcher -> java)."""
    assert runner.pid is not None
    tree = psutil.Process(runner.pid).children(recursive=True)
    (java,) = [c for c in tree if c.name() == "java"]
    workers = [c for c in java.children() if "model_service_worker.py" in " ".join(c.cmdline())]
    assert len(workers) == 1, workers
    return workers[0]


def describe(runner: TorchServeRunner) -> list[dict[str, object]]:
    """The management API's description of digits (token authorization is on)."""
    reply = httpx.get(
        f"{runner.management_url}/models/digits", headers=runner.management_headers(), timeout=5
    )
    assert reply.status_code == 200, reply.text
    described: list[dict[str, object]] = reply.json()
    return described


def worker_pid_from_management(runner: TorchServeRunner) -> int:
    (model,) = describe(runner)
    (worker,) = model["workers"]
    return int(worker["pid"])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls `condition` until true; returns when it became true (monotonic)."""
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)
    return time.monotonic()


class Load(LoadThreads):
    """Threads sending batch-1 digits requests through the gateway, recording every answer."""

    join_s = DEADLINE_S + 30

    def __init__(self, gw: RunningGateway, x: np.ndarray, expected: np.ndarray) -> None:
        self.gw, self.x, self.expected = gw, x, expected
        self.stop = threading.Event()
        self.results: list[tuple[str, str, float, float]] = []  # protocol, status, sent, took
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(p,)) for p in ("http", "grpc", "http", "grpc")
        ]

    def _call(self, protocol: str, http: httpx.Client, channel: grpc.Channel) -> str:
        try:
            if protocol == "grpc":
                reply = client.infer_grpc(
                    channel, "digits@pytorch", {"pixels": self.x}, timeout=DEADLINE_S + 20
                )
            else:
                reply = client.infer_http(http, "digits@pytorch", {"pixels": self.x}, binary=True)
        except client.ClientError as exc:
            return exc.status
        except httpx.TimeoutException:
            return "client timeout"
        if not np.allclose(reply.outputs[0].data, self.expected, rtol=0, atol=ATOL):
            return "wrong answer"
        return "200" if protocol == "http" else "OK"

    def _run(self, protocol: str) -> None:
        with (
            httpx.Client(base_url=self.gw.http_url, timeout=DEADLINE_S + 20) as http,
            grpc.insecure_channel(self.gw.grpc_address) as channel,
        ):
            while not self.stop.is_set():
                sent = time.monotonic()
                status = self._call(protocol, http, channel)
                with self.lock:
                    self.results.append((protocol, status, sent, time.monotonic() - sent))
                if status not in ("200", "OK"):
                    self.stop.wait(0.05)  # a client backing off; spares the 2 cores

    def count(self, ok_after: float | None = None) -> int:
        with self.lock:
            return sum(
                1
                for _, status, sent, _ in self.results
                if ok_after is None or (status in ("200", "OK") and sent > ok_after)
            )


def test_concurrent_requests_each_get_their_own_rows(own_torchserve: OwnTorchServe) -> None:
    """With batch_size 8, TorchServe merges concurrent requests into one handler call."""
    runner, repo = own_torchserve.runner, own_torchserve.repository
    (described,) = describe(runner)
    assert described["batchSize"] == own_torchserve.batch_size
    ref = samples(repo, "digits")
    spans = [(i * 3, i * 3 + 1 + i % 3) for i in range(32)]
    gw = start_gateway(
        repo, {"torchserve": runner.endpoint}, key_files={"torchserve": runner.key_file}
    )
    try:

        def one(span: tuple[int, int]) -> np.ndarray:
            x = ref["inputs"][slice(*span)]
            return infer(gw, "grpc", "digits@pytorch", {"pixels": x}).outputs[0].data

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, spans))
    finally:
        gw.stop()
    for span, got in zip(spans, results, strict=True):
        np.testing.assert_allclose(got, ref["logits"][slice(*span)], rtol=0, atol=ATOL)


def test_worker_killed_under_load_gives_503_or_200_and_recovers(
    own_torchserve: OwnTorchServe,
) -> None:
    """With batch_size 8 TorchServe also drops the jobs of a batch still being formed."""
    runner, repo = own_torchserve.runner, own_torchserve.repository
    ref = samples(repo, "digits")
    x, expected = ref["inputs"][:1], ref["logits"][:1]
    worker = the_worker(runner)
    assert worker.name() != "java"
    assert worker_pid_from_management(runner) == worker.pid

    gw = start_gateway(
        repo,
        {"torchserve": runner.endpoint},
        key_files={"torchserve": runner.key_file},
        default_timeout_s=DEADLINE_S,
    )
    http = httpx.Client(base_url=gw.http_url, timeout=10)

    def ready() -> bool:
        return http.get("/v2/models/digits@pytorch/ready").status_code == 200

    try:
        assert ready()
        with Load(gw, x, expected) as load:
            wait_for(lambda: load.count() >= 40, 30, "requests before the kill")
            killed_at = time.monotonic()
            worker.send_signal(signal.SIGKILL)
            wait_for(lambda: not ready(), 10, "ready() to report the dead worker")
            back = wait_for(ready, 60, "TorchServe to restart the worker")
            wait_for(lambda: load.count(ok_after=back) >= 20, 30, "requests after the restart")
        assert worker_pid_from_management(runner) != worker.pid
        assert the_worker(runner).pid != worker.pid
    finally:
        http.close()
        gw.stop()

    in_flight = [r for r in load.results if r[2] < killed_at < r[2] + r[3]]
    assert in_flight, "no request was in flight at the kill"
    statuses = {status for _, status, _, _ in load.results}
    assert statuses <= {"200", "503", "OK", "UNAVAILABLE"}, statuses
    slowest = max(took for _, _, _, took in load.results)
    assert slowest <= DEADLINE_S + 1, f"a request took {slowest:.1f} s"
