"""Builds every image a compose project builds, with BuildKit, where Compose cannot.

Compose (v2.x, v5.x) builds through the buildx plugin and falls back to the classic
builder without it, which has no `RUN --mount` (our Dockerfile bind-mounts the
wheelhouse instead of copying it into layers). This machine has no buildx, but its
Debian docker client (/usr/bin/docker) runs BuildKit in the daemon with
DOCKER_BUILDKIT=1. So: read each service's `build:` (context, dockerfile, target, args,
image) from `docker compose config`, then `docker build` each distinct image once.

    python3 docker/offline/build_images.py -f docker/compose.yaml -f docker/compose.offline.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

DEBIAN_DOCKER = "/usr/bin/docker"  # the preinstalled newer client needs buildx for BuildKit


def compose_builds(files: list[str], profiles: list[str]) -> dict[str, dict]:
    """image -> its service's build section, from `docker compose config`."""
    argv = ["docker", "compose"]
    for f in files:
        argv += ["-f", f]
    for p in profiles:
        argv += ["--profile", p]
    doc = json.loads(subprocess.check_output([*argv, "config", "--format", "json"]))
    builds: dict[str, dict] = {}
    for name, service in doc["services"].items():
        if "build" in service:
            builds.setdefault(service.get("image", f"{doc['name']}-{name}"), service["build"])
    return builds


def build_argv(image: str, build: dict, docker: str) -> list[str]:
    argv = [docker, "build", "--tag", image]
    context = build["context"]
    argv += ["--file", os.path.join(context, build.get("dockerfile", "Dockerfile"))]
    if build.get("target"):
        argv += ["--target", build["target"]]
    for key, value in (build.get("args") or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    return [*argv, context]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--file", action="append", required=True, dest="files")
    parser.add_argument("--profile", action="append", default=[])
    parser.add_argument("--quiet", action="store_true", help="Only each image's outcome.")
    args = parser.parse_args(argv)
    docker = DEBIAN_DOCKER if os.path.exists(DEBIAN_DOCKER) else shutil.which("docker") or "docker"
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    for image, build in compose_builds(args.files, args.profile).items():
        t0 = time.perf_counter()
        cmd = build_argv(image, build, docker)
        if args.quiet:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stdout[-4000:], done.stderr[-4000:], file=sys.stderr)
        else:
            done = subprocess.run(cmd, env=env, check=False)
        if done.returncode != 0:
            print(f"build of {image} failed", file=sys.stderr)
            return done.returncode
        print(f"built {image} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
