"""The files the containers run with, against fakes of what they talk to: the TF Serving
and TorchServe healthchecks, and the builder's TF Serving model config and key setting.
(The live stack runs the stand-ins; these cover what only the official images use.)"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from gateway.config import DEFAULT_REPOSITORY, Repository, load_repository
from tests.containers.tools import DOCKER, RUNTIME, need

pytestmark = pytest.mark.container

Routes = dict[str, tuple[int, object]]


def _fill_repository() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fill_repository", DOCKER / "builder" / "fill_repository.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fill = _fill_repository()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Routes, str | None], int]]:
    """An HTTP server on 127.0.0.1:0 answering fixed JSON per path; returns its port.
    With a key, a request without `Authorization: Bearer <key>` gets 400 (TorchServe's
    answer when token authorization fails)."""
    servers: list[ThreadingHTTPServer] = []

    def start(routes: Routes, key: str | None = None) -> int:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = routes.get(self.path, (404, {"error": "not found"}))
                if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
                    status, body = 400, {"code": 400, "type": "InvalidKeyException"}
                data = json.dumps(body, indent=1).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _tfs_status(state: str) -> tuple[int, object]:
    """TF Serving's GET /v1/models/NAME answer."""
    status = {"version": "1", "state": state, "status": {"error_code": "OK", "error_message": ""}}
    return 200, {"model_version_status": [status]}


@pytest.fixture(scope="module")
def tfs_config(tmp_path_factory: pytest.TempPathFactory, repository: Repository) -> Path:
    path = tmp_path_factory.mktemp("tfs") / "models.config"
    path.write_text(fill.tfserving_config(repository))
    return path


def test_tfserving_config_is_what_tf_serving_reads(tfs_config: Path) -> None:
    """The builder's model_config_list parses as TF Serving's own ModelServerConfig
    (official proto, in a subprocess: it imports TensorFlow)."""
    check = (
        "import sys; from google.protobuf import text_format; "
        "from tensorflow_serving.config import model_server_config_pb2 as m; "
        "c = text_format.Parse(open(sys.argv[1]).read(), m.ModelServerConfig()); "
        "print(' '.join(f'{x.name}:{x.base_path}:{list(x.model_version_policy.specific.versions)}'"
        " for x in c.model_config_list.config))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(tfs_config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"digits:{DEFAULT_REPOSITORY / 'digits'}:[1]" in done.stdout.split()


@pytest.mark.parametrize(
    ("states", "healthy"),
    [
        ({"digits": "AVAILABLE", "resnet18": "AVAILABLE"}, True),
        ({"digits": "AVAILABLE", "resnet18": "LOADING"}, False),
        ({"digits": "AVAILABLE"}, False),
    ],
)
def test_tfserving_healthcheck(
    states: dict[str, str], healthy: bool, tfs_config: Path, fake_server: Callable[..., int]
) -> None:
    port = fake_server({f"/v1/models/{m}": _tfs_status(s) for m, s in states.items()})
    env = {"PATH": "/usr/bin:/bin", "TFS_MODEL_CONFIG": str(tfs_config), "TFS_REST_PORT": str(port)}
    done = subprocess.run(
        [need("bash"), str(RUNTIME / "tfserving-health.sh")], env=env, timeout=30, check=False
    )
    assert (done.returncode == 0) is healthy


def test_tfserving_healthcheck_without_server(tfs_config: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TFS_MODEL_CONFIG": str(tfs_config), "TFS_REST_PORT": "9"}
    done = subprocess.run(
        [need("bash"), str(RUNTIME / "tfserving-health.sh")], env=env, check=False
    )
    assert done.returncode != 0


def _torchserve_routes(worker_status: str) -> Routes:
    workers = [{"id": "9000", "status": worker_status}]
    return {
        "/models": (200, {"models": [{"modelName": "digits", "modelUrl": "digits-v1.mar"}]}),
        "/models/digits": (200, [{"modelName": "digits", "workers": workers}]),
    }


@pytest.mark.parametrize(("status", "with_key", "healthy"),
                         [("READY", True, True), ("UNLOADING", True, False),
                          ("READY", False, False)])  # fmt: skip
def test_torchserve_healthcheck(
    status: str, with_key: bool, healthy: bool, tmp_path: Path, fake_server: Callable[..., int]
) -> None:
    """READY workers for every model, asked with the management key from key_file.json."""
    port = fake_server(_torchserve_routes(status), "m-key")
    keys = {"management": {"key": "m-key"}, "inference": {"key": "i-key"}}
    if with_key:
        (tmp_path / "key_file.json").write_text(json.dumps(keys))
    env = {"TS_KEY_DIR": str(tmp_path), "TS_MANAGEMENT_URL": f"http://127.0.0.1:{port}"}
    done = subprocess.run(
        [sys.executable, str(RUNTIME / "torchserve-health.py")], env=env, timeout=30, check=False
    )
    assert (done.returncode == 0) is healthy


def test_builder_names_the_key_file_for_torchserve_variants(tmp_path: Path) -> None:
    for model in ("digits", "resnet18"):
        (tmp_path / model).mkdir()
        shutil.copy(DEFAULT_REPOSITORY / model / "model.yaml", tmp_path / model / "model.yaml")
    fill.name_key_file(tmp_path, "/run/torchserve-keys/key_file.json")
    repo = load_repository(tmp_path)
    for model in repo.values():
        for variant in model.variants.values():
            named = variant.settings.get("key_file")
            expected = (
                "/run/torchserve-keys/key_file.json" if variant.runner == "torchserve" else None
            )
            assert named == expected
