"""TorchServe container healthcheck (standard library only: it runs in the official image).

Healthy when every registered model has a worker whose status is READY, as the
management API says (TorchServe's /ping says Healthy while no worker lives). With token
authorization on, the management key comes from key_file.json in TS_KEY_DIR.
Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

MANAGEMENT = os.environ.get("TS_MANAGEMENT_URL", "http://127.0.0.1:8081")


def _get(path: str, headers: dict[str, str]) -> object:
    request = urllib.request.Request(MANAGEMENT + path, headers=headers)
    with urllib.request.urlopen(request, timeout=2) as reply:
        return json.load(reply)


def main() -> int:
    headers = {}
    key_file = os.path.join(os.environ.get("TS_KEY_DIR", "/home/model-server"), "key_file.json")
    if os.path.exists(key_file):
        with open(key_file) as f:
            headers["Authorization"] = "Bearer " + json.load(f)["management"]["key"]
    try:
        models = _get("/models", headers)["models"]
        for model in models:
            described = _get(f"/models/{model['modelName']}", headers)
            workers = [w for d in described for w in d.get("workers", [])]
            if not any(w.get("status") == "READY" for w in workers):
                return 1
    except (OSError, ValueError, KeyError, TypeError):
        return 1
    return 0 if models else 1


if __name__ == "__main__":
    sys.exit(main())
