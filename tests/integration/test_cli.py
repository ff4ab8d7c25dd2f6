"""`servegate up` as a user runs it: it serves, and SIGINT (Ctrl-C) stops all it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.config import Repository

pytestmark = pytest.mark.integration


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    until = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"servegate up exited with {proc.returncode}"
        assert time.monotonic() < until, "servegate up did not become ready"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_up_serves_and_ctrl_c_stops_everything(tmp_path: Path, repository: Repository) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "up", "--http-port", "0", "--grpc-port", "0",
         "--runner", "onnx", "--no-build", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        info = _wait_for(ready, proc, 60)
        url = f"http://127.0.0.1:{info['http_port']}"
        assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
        assert httpx.get(f"{url}/docs").status_code == 200
        assert "/v2/models/{model}/infer" in httpx.get(f"{url}/openapi.json").json()["paths"]
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "infer", "digits", "--url", url, "--sample", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "predicted class: [2] (label 2)" in out.stdout
        runner_pid = info["runners"]["onnx"]["pid"]  # type: ignore[index]
        assert psutil.pid_exists(runner_pid)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
        assert proc.returncode == 0, output
        assert "stopping" in output
        assert not psutil.pid_exists(runner_pid) or psutil.Process(runner_pid).status() == "zombie"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
