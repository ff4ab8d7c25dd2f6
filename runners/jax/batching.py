"""JAX runner, the policy half: batch-size buckets, row padding and a bounded compile cache.

Every new input shape costs a compile (50-180 ms for the digits MLP here, seconds for
ResNet-18), so the engine never compiles per batch size: it pads a batch of n rows up to
the next bucket, splits batches above the largest bucket into chunks, and slices the
rows back. The set of shapes it ever compiles is then the bucket list, held in an LRU of
bounded size. Pure numpy, no jax: the engine (engine.py) acts, this module decides.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_CACHE_SIZE = 16

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class BucketPolicy:
    """The jax variant's settings in model.yaml (`variants.<name>.settings`).

    batch_buckets: batch sizes that get compiled; others are padded up to the next one.
    compile_cache_size: most compiled shapes kept at once (least recently used go first).
    prewarm: compile these buckets at load (true: all of them), so no request pays for it.
    """

    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    cache_size: int = DEFAULT_CACHE_SIZE
    prewarm: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> BucketPolicy:
        """Validates the settings; an unknown key or a bad value is an error, not ignored."""
        known = {"batch_buckets", "compile_cache_size", "prewarm"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown jax settings {unknown}; known: {sorted(known)}")
        raw = settings.get("batch_buckets", DEFAULT_BUCKETS)
        if not isinstance(raw, list | tuple) or not raw:
            raise ValueError(f"batch_buckets must be a non-empty list, got {raw!r}")
        if not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in raw):
            raise ValueError(f"batch_buckets must be positive integers, got {raw!r}")
        buckets = tuple(sorted(set(raw)))
        size = settings.get("compile_cache_size", max(DEFAULT_CACHE_SIZE, len(buckets)))
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"compile_cache_size must be a positive integer, got {size!r}")
        warm = settings.get("prewarm", False)
        if warm is True:
            prewarm = buckets
        elif warm is False:
            prewarm = ()
        elif isinstance(warm, list | tuple) and all(b in buckets for b in warm):
            prewarm = tuple(sorted(set(warm)))
        else:
            raise ValueError(f"prewarm must be true, false or a list of buckets, got {warm!r}")
        if len(prewarm) > size:
            raise ValueError(f"prewarm names {len(prewarm)} buckets but the cache holds {size}")
        return cls(buckets, size, prewarm)


@dataclass(frozen=True)
class Chunk:
    """Rows [start, stop) of the batch, run padded to `size` rows."""

    start: int
    stop: int
    size: int


def bucket_for(rows: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `rows` (the largest when none does)."""
    return next((b for b in buckets if b >= rows), buckets[-1])


def plan(rows: int, buckets: Sequence[int]) -> list[Chunk]:
    """How to run `rows` rows: full chunks of the largest bucket, then one padded remainder.

    An empty batch still runs the smallest bucket once, so its outputs get their shape.
    """
    if rows == 0:
        return [Chunk(0, 0, buckets[0])]
    largest = buckets[-1]
    chunks = []
    for start in range(0, rows, largest):
        stop = min(start + largest, rows)
        chunks.append(Chunk(start, stop, bucket_for(stop - start, buckets)))
    return chunks


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """`array` with zero rows appended up to `size` rows (itself when it has them)."""
    missing = size - array.shape[0]
    if missing <= 0:
        return array
    pad = np.zeros((missing, *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, pad])


Call = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


def run_bucketed(inputs: Sequence[np.ndarray], buckets: Sequence[int], call: Call) -> list[Any]:
    """Runs `call` on bucket-sized slices of `inputs` (all of one batch size); rows kept in order.

    `call` sees only leading dims from `buckets`; each output it returns has the padded
    batch as its leading dim, and only the real rows come back.
    """
    rows = inputs[0].shape[0]
    parts: list[list[np.ndarray]] = []
    for chunk in plan(rows, buckets):
        padded = [pad_rows(x[chunk.start : chunk.stop], chunk.size) for x in inputs]
        outs = call(padded)
        parts.append([np.asarray(o)[: chunk.stop - chunk.start] for o in outs])
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


class LRUCache(Generic[K, V]):
    """At most `capacity` entries; a hit makes an entry the most recent, a miss may evict."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.evictions = 0
        self._items: OrderedDict[K, V] = OrderedDict()

    def get_or_create(self, key: K, create: Callable[[], V]) -> tuple[V, bool]:
        """The cached value, or a new one from `create` (True when created)."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key], False
        value = create()
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
            self.evictions += 1
        return value, True

    def keys(self) -> list[K]:
        """Least recently used first."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
