"""TorchServe archiving: a TorchScript file + our handler -> `<version>/model.mar`.

The .mar carries everything the worker needs, so it also runs in the official TorchServe
container: the handler, the framing module it imports (--extra-files), and a
model-config.yaml with the worker and batching settings (TorchServe reads these from the
archive; without the model API there is no other way to set them) plus the `handler:`
section our handler reads (input order, output names, threads).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

HANDLER = Path(__file__).resolve().parent / "handler.py"
FRAMING = Path(__file__).resolve().parents[2] / "gateway" / "protocol" / "torchserve_framing.py"

# Defaults for the model.yaml variant `settings` this module reads. TorchServe's batching
# is off by default (batch_size 1): the gateway batches, alike for every variant, and
# TorchServe waits up to max_batch_delay_ms for a lone request's batch to fill (measured
# +1.1 ms p50 on sequential calls with 8 / 1 ms). With batch_size > 1 the delay must be
# >= 1 ms: 0 is read as "unset" and becomes TorchServe's default of 100 ms.
DEFAULTS: Mapping[str, Any] = {
    "batch_size": 1,
    "max_batch_delay_ms": 1,
    "response_timeout_s": 30,
    "threads": None,
}


def model_config(
    inputs: Sequence[str], outputs: Sequence[str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The model-config.yaml document for one model."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown torchserve settings {sorted(unknown)}; known: {sorted(DEFAULTS)}"
        )
    s = {**DEFAULTS, **settings}
    if int(s["max_batch_delay_ms"]) < 1 or int(s["batch_size"]) < 1:
        raise ValueError("torchserve batch_size and max_batch_delay_ms must be >= 1")
    handler: dict[str, Any] = {"inputs": list(inputs), "outputs": list(outputs)}
    if s["threads"]:
        handler["threads"] = int(s["threads"])
    return {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": int(s["batch_size"]),
        "maxBatchDelay": int(s["max_batch_delay_ms"]),
        "responseTimeout": int(s["response_timeout_s"]),
        "handler": handler,
    }


def archive(
    serialized: Path,
    out: Path,
    *,
    name: str,
    version: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `out` (a .mar) with torch-model-archiver; returns it."""
    with tempfile.TemporaryDirectory(prefix="servegate-mar-") as tmp:
        work = Path(tmp)
        config = work / "model-config.yaml"
        config.write_text(yaml.safe_dump(model_config(inputs, outputs, settings or {})))
        argv = [
            sys.executable, "-m", "model_archiver.model_packaging",
            "--model-name", name,
            "--version", version,
            "--serialized-file", str(serialized),
            "--handler", str(HANDLER),
            "--extra-files", str(FRAMING),
            "--config-file", str(config),
            "--export-path", str(work),
            "--force",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed:\n{done.stdout}{done.stderr}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(work / f"{name}.mar", out)
    return out
