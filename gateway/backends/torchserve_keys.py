"""Backends: TorchServe's token-authorization keys, as its key_file.json holds them.

TorchServe 0.12 writes the file in its working directory at every start: a management,
an inference and an API key, each `{"key": ..., "expiration time": ...}`. The backend
sends the inference key with predictions and the management key with worker-status
calls; the supervisor reads the management key for its own health probes.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_keys(path: Path) -> dict[str, str]:
    """Key type (management, inference, API) -> key; empty until TorchServe wrote them."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: v["key"] for k, v in doc.items() if isinstance(v, dict) and "key" in v}


class TorchServeKeys:
    """TorchServe's token-authorization keys, from the key_file.json it writes at start."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._keys: dict[str, str] = {}
        self._mtime = 0.0

    def stale(self) -> bool:
        """True when the file changed since the keys were read (worth a reload)."""
        if self._path is None:
            return False
        try:
            return self._path.stat().st_mtime != self._mtime
        except OSError:
            return False

    def reload(self) -> None:
        if self._path is None:
            return
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return
        self._keys = read_keys(self._path)
        self._mtime = mtime

    def metadata(self, kind: str) -> tuple[tuple[str, str], ...] | None:
        if self._path is None:
            return None
        if not self._keys:
            self.reload()
        key = self._keys.get(kind)
        return (("authorization", f"Bearer {key}"),) if key else None
