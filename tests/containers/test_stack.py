"""The compose deployment, run for real: images built, `docker compose up --wait`, every
variant of digits through tritonclient, a runner crash healed by Docker's restart policy
while the gateway keeps running, Prometheus scraping, then `down -v` leaving nothing.

On this machine the offline overlay stands in for the images it cannot pull (TorchServe
from PyPI; our TF Serving-API runner for tensorflow_model_server; Debian's Prometheus).
Checked at teardown: every container stopped on SIGTERM by itself (no SIGKILL after the
grace period), and no container, volume or network of the project is left. Timings and
image sizes go to reports/containers/compose.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.containers.stack import ComposeStack
from tests.containers.tools import ROOT, need_compose, need_daemon, run

pytestmark = [pytest.mark.container, pytest.mark.slow]

VARIANTS = ("onnx", "jax", "tensorflow", "pytorch")
TOLERANCE = 1e-4  # tests/parity: digits, absolute on the logits
HEAL_DEADLINE_S = 240.0
REPORT = ROOT / "reports" / "containers" / "compose.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    s = ComposeStack(
        compose=need_compose(),
        docker=need_daemon(),
        project=f"servegate-test-{int(time.time())}",
        workdir=tmp_path_factory.mktemp("compose"),
    )
    s.write_secrets()
    s.prepare()
    try:
        s.up()
        yield s
        stopped = s.compose_run("stop", timeout=300)
        codes = {
            svc: s.inspect(svc)["State"]["ExitCode"]
            for svc in ("gateway", "onnx", "jax", "tfserving", "torchserve", "prometheus")
        }
    finally:
        s.compose_run("down", "-v", "--remove-orphans", timeout=300)
        _report(s)
    assert stopped.returncode == 0, stopped.stderr
    # 137: SIGKILLed after stop_grace_period, i.e. SIGTERM was not handled.
    assert all(code == 0 for code in codes.values()), codes
    assert s.leftovers() == {}


def _report(s: ComposeStack) -> None:
    sizes = {}
    for image in sorted(set(s.compose_run("config", "--images").stdout.split())):
        done = run([s.docker, "image", "inspect", "-f", "{{.Size}}", image])
        if done.returncode == 0:
            sizes[image] = round(int(done.stdout) / 1e6)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"timings_s": s.timings, "image_mb": sizes}, indent=2))


@pytest.fixture(scope="module")
def reference(
    stack: ComposeStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """The deployed digits' own samples.npz (inputs, reference logits, labels), copied out
    of the models volume through the builder's container."""
    dest = tmp_path_factory.mktemp("ref") / "samples.npz"
    src = f"{stack.container('models')}:/models/digits/1/samples.npz"
    done = run([stack.docker, "cp", src, str(dest)])
    assert done.returncode == 0, done.stderr
    with np.load(dest) as f:
        return {k: f[k] for k in f.files}


def _auth(stack: ComposeStack) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.keys['infer']}"}


def infer_grpc(stack: ComposeStack, variant: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(stack.address(8001))
    inp = grpcclient.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    reply = client.infer(f"digits@{variant}", [inp], headers=_auth(stack), client_timeout=10)
    client.close()
    return reply.as_numpy("logits")  # type: ignore[no-any-return]


def infer_http(stack: ComposeStack, variant: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(stack.address(8000), network_timeout=10)
    inp = httpclient.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    reply = client.infer(f"digits@{variant}", [inp], headers=_auth(stack))
    client.close()
    return reply.as_numpy("logits")  # type: ignore[no-any-return]


@pytest.mark.parametrize("infer", [infer_grpc, infer_http], ids=["grpc", "http"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_answers_within_parity(
    stack: ComposeStack,
    reference: dict[str, np.ndarray],
    variant: str,
    infer: Callable[[ComposeStack, str, np.ndarray], np.ndarray],
) -> None:
    x = reference["inputs"][:16].astype(np.float32)
    logits = infer(stack, variant, x)
    expected = reference["logits"][:16]
    assert np.abs(logits - expected).max() <= TOLERANCE
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_requests_without_a_key_are_refused(stack: ComposeStack) -> None:
    client = grpcclient.InferenceServerClient(stack.address(8001))
    inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 64), np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("digits", [inp], client_timeout=10)
    assert refused.value.status() == "StatusCode.UNAUTHENTICATED"


def _process(stack: ComposeStack, service: str, name: str) -> psutil.Process:
    """The container's process called `name` (seen from the host)."""
    init = psutil.Process(stack.inspect(service)["State"]["Pid"])
    found = [p for p in init.children(recursive=True) if p.name() == name]
    assert found, f"{service}: no {name} under {init.name()}"
    return found[0]


# A crash, as the kernel's OOM killer or a segfault would cause it: SIGKILL to the
# server's own process. (`docker kill` would not do: Docker counts it as a manual stop,
# after which no restart policy restarts the container.)
@pytest.mark.parametrize(
    ("variant", "service", "process"),
    [("onnx", "onnx", "python"), ("pytorch", "torchserve", "java")],
)
def test_a_crashed_runner_is_restarted_and_reached_again(
    stack: ComposeStack, reference: dict[str, np.ndarray], variant: str, service: str, process: str
) -> None:
    x = reference["inputs"][:1].astype(np.float32)
    gateway_before = stack.inspect("gateway")["State"]
    restarts_before = stack.inspect(service)["RestartCount"]
    _process(stack, service, process).kill()
    until = time.monotonic() + HEAL_DEADLINE_S
    answered = None
    while time.monotonic() < until:
        if stack.inspect(service)["RestartCount"] > restarts_before:
            try:
                answered = infer_grpc(stack, variant, x)
                break
            except InferenceServerException:
                pass  # 503 until the restarted runner is ready
        time.sleep(0.5)
    assert answered is not None, f"{variant} never answered again\n{stack.diagnose()}"
    assert np.abs(answered - reference["logits"][:1]).max() <= TOLERANCE
    gateway_after = stack.inspect("gateway")["State"]
    assert gateway_after["StartedAt"] == gateway_before["StartedAt"]  # never restarted
    assert gateway_after["Status"] == "running"


def test_servers_run_as_uid_1000(stack: ComposeStack) -> None:
    for service, process in (("gateway", "servegate"), ("onnx", "python"),
                             ("jax", "python"), ("tfserving", "python"),
                             ("torchserve", "java")):  # fmt: skip
        assert _process(stack, service, process).uids().real == 1000, service


def test_only_the_gateway_is_published(stack: ComposeStack) -> None:
    done = stack.compose_run("ps", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    published = {
        (r["Service"], p["URL"])
        for r in rows
        for p in r.get("Publishers") or []
        if p["PublishedPort"]
    }
    assert {svc for svc, _ in published} == {"gateway"}
    assert {url for _, url in published} == {"127.0.0.1"}


def test_prometheus_scrapes_the_gateway_and_torchserve(stack: ComposeStack) -> None:
    ask = (
        "import json, urllib.request; "
        "r = json.load(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/targets', timeout=5)); "
        "print(json.dumps({t['labels']['job']: t['health'] for t in r['data']['activeTargets']}))"
    )
    until = time.monotonic() + 120
    health: dict[str, str] = {}
    while time.monotonic() < until:
        done = run([stack.docker, "exec", stack.container("prometheus"), "python3", "-c", ask])
        if done.returncode == 0:
            health = json.loads(done.stdout)
            if health.get("gateway") == "up" and health.get("torchserve") == "up":
                break
        time.sleep(1)
    assert health.get("gateway") == "up" and health.get("torchserve") == "up", health
