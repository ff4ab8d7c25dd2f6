"""A compose project of the deployment under test: built, brought up, inspected, removed.

`ComposeStack` runs `docker compose` with the real compose.yaml plus the offline overlay
(this machine pulls no image), under a project name of its own, with host ports chosen by
Docker (the gateway's published ports are empty, so any free one), and its own API keys.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.containers.tools import COMPOSE, DOCKER, OFFLINE, ROOT, run

PROFILES = ("cpu", "monitoring")


@dataclass
class ComposeStack:
    compose: list[str]
    docker: str
    project: str
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        argv = [*self.compose, "-p", self.project, "-f", str(COMPOSE), "-f", str(OFFLINE)]
        for profile in PROFILES:
            argv += ["--profile", profile]
        return argv

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SERVEGATE_API_KEYS": str(self.workdir / "api_keys"),
            "GRAFANA_ADMIN_PASSWORD_FILE": str(self.workdir / "grafana_admin_password"),
            "SERVEGATE_HTTP_PORT": "",  # empty: Docker picks a free host port
            "SERVEGATE_GRPC_PORT": "",
        }

    def write_secrets(self) -> None:
        """Keys readable by the containers' uid 1000 (a bind-mounted file keeps its mode;
        the folder stays private to this user)."""
        self.workdir.chmod(0o700)
        self.keys = {"infer": secrets.token_hex(16), "admin": secrets.token_hex(16)}
        keys = self.workdir / "api_keys"
        keys.write_text("".join(f"{scope}:{key}\n" for scope, key in self.keys.items()))
        keys.chmod(0o644)
        (self.workdir / "grafana_admin_password").write_text(secrets.token_hex(8))

    def compose_run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return run([*self.argv, *args], env=self.env(), timeout=timeout)

    def timed(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        t0 = time.perf_counter()
        done = run(argv, **kwargs)
        self.timings[name] = round(time.perf_counter() - t0, 1)
        return done

    def prepare(self) -> None:
        """The local base image and the wheelhouse (both cached), then every image."""
        env = {**os.environ, "PIP": f"{sys.executable} -m pip"}
        done = self.timed("prepare_s", [str(DOCKER / "offline" / "prepare.sh"), "all"], env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        build = [sys.executable, str(DOCKER / "offline" / "build_images.py"), "--quiet",
                 "-f", str(COMPOSE), "-f", str(OFFLINE)]  # fmt: skip
        for profile in PROFILES:
            build += ["--profile", profile]
        done = self.timed("build_s", build, cwd=ROOT, timeout=3600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def up(self) -> None:
        t0 = time.perf_counter()
        done = self.compose_run("up", "-d", "--wait", "--wait-timeout", "600", "--no-build")
        self.timings["up_s"] = round(time.perf_counter() - t0, 1)
        assert done.returncode == 0, f"{done.stderr[-3000:]}\n{self.diagnose()}"

    def diagnose(self) -> str:
        ps = self.compose_run("ps", "-a").stdout
        logs = self.compose_run("logs", "--tail", "30", "--no-color").stdout
        return f"{ps}\n{logs[-8000:]}"

    def container(self, service: str) -> str:
        done = self.compose_run("ps", "-a", "-q", service)
        ids = done.stdout.split()
        assert len(ids) == 1, f"{service}: {done.stdout} {done.stderr}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        done = run([self.docker, "inspect", self.container(service)])
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)[0]  # type: ignore[no-any-return]

    def address(self, port: int) -> str:
        done = self.compose_run("port", "gateway", str(port))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for what in ("ps -a -q", "volume ls -q", "network ls -q"):
            done = run([self.docker, *what.split(), "--filter", label])
            found[what.split()[0]] = done.stdout.split()
        return {k: v for k, v in found.items() if v}
