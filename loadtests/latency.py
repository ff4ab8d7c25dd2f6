"""Load tests: exact latency percentiles and a log histogram of one Locust run.

Locust keeps response times rounded to whole milliseconds (and its CSVs print integer
percentiles), too coarse for a sub-millisecond model, so the locustfile also keeps every
successful request's time here and writes `<csv prefix>_latency.json` at the end. Pure
code: no locust import, so the bench and the tests read and summarise it too.
"""

from __future__ import annotations

import json
import time
from array import array
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
BINS_PER_DECADE = 20
LOWEST_MS = 0.01  # histogram edges start here (10 µs) and grow by 10^(1/20)


def percentile_key(q: float) -> str:
    """50.0 -> "p50_ms", 99.9 -> "p99.9_ms"."""
    return f"p{q:g}_ms"


def histogram(latencies_ms: np.ndarray) -> dict[str, Any]:
    """Counts in log-spaced bins; only the span from the first to the last non-empty bin."""
    if latencies_ms.size == 0:
        return {
            "lowest_ms": LOWEST_MS,
            "bins_per_decade": BINS_PER_DECADE,
            "first": 0,
            "counts": [],
        }
    clipped = np.maximum(latencies_ms, LOWEST_MS)
    idx = np.floor(np.log10(clipped / LOWEST_MS) * BINS_PER_DECADE + 1e-9).astype(np.int64)
    first, last = int(idx.min()), int(idx.max())
    counts = np.bincount(idx - first, minlength=last - first + 1)
    return {
        "lowest_ms": LOWEST_MS,
        "bins_per_decade": BINS_PER_DECADE,
        "first": first,
        "counts": counts.tolist(),
    }


def bin_edges(hist: dict[str, Any]) -> list[float]:
    """The len(counts) + 1 edges (ms) of a `histogram` result."""
    lo, per, first = hist["lowest_ms"], hist["bins_per_decade"], hist["first"]
    return [lo * 10 ** ((first + k) / per) for k in range(len(hist["counts"]) + 1)]


def summarize(latencies_ms: np.ndarray, window_s: float, failures: int) -> dict[str, Any]:
    """Exact percentiles, mean, min, max, throughput and the histogram of one window."""
    n = int(latencies_ms.size)
    doc: dict[str, Any] = {
        "ok": n,
        "failures": failures,
        "window_s": window_s,
        "ok_per_s": n / window_s if window_s > 0 else 0.0,
    }
    if n:
        qs = np.percentile(latencies_ms, PERCENTILES)
        doc.update({percentile_key(q): float(v) for q, v in zip(PERCENTILES, qs, strict=True)})
        doc.update(
            mean_ms=float(latencies_ms.mean()),
            min_ms=float(latencies_ms.min()),
            max_ms=float(latencies_ms.max()),
        )
    else:  # no successful request: no latency (None, since JSON has no NaN)
        doc.update({percentile_key(q): None for q in PERCENTILES})
        doc.update(mean_ms=None, min_ms=None, max_ms=None)
    doc["histogram"] = histogram(latencies_ms)
    return doc


class Recorder:
    """Collects each request's time (ms) from Locust's request event; reset after warm-up."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.ok = array("d")
        self.failures = 0
        self.started = self._clock()

    def on_request(self, response_time: float | None, exception: Any = None, **_: Any) -> None:
        if exception is not None:
            self.failures += 1
        elif response_time is not None:
            self.ok.append(float(response_time))

    def summary(self) -> dict[str, Any]:
        window = self._clock() - self.started
        return summarize(np.frombuffer(self.ok, dtype=np.float64), window, self.failures)

    def save(self, path: Path, **extra: Any) -> None:
        """Writes `summary()` plus `extra` as JSON, atomically."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.summary(), **extra}))
        tmp.replace(path)
