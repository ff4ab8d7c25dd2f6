"""The JAX runner's bucketing policy: rows in == rows out, order kept, the cache stays bounded.

Pure numpy (runners/jax/batching.py imports no jax), so these run in milliseconds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runners.jax.batching import (
    DEFAULT_BUCKETS,
    BucketPolicy,
    LRUCache,
    bucket_for,
    pad_rows,
    plan,
    run_bucketed,
)

bucket_lists = st.lists(st.integers(1, 40), min_size=1, max_size=6, unique=True).map(
    lambda b: tuple(sorted(b))
)


@given(rows=st.integers(0, 300), buckets=bucket_lists)
def test_plan_covers_every_row_once_in_order_with_bucket_sizes(
    rows: int, buckets: tuple[int, ...]
) -> None:
    chunks = plan(rows, buckets)
    assert chunks[0].start == 0 and chunks[-1].stop == rows
    for before, after in pairwise(chunks):
        assert before.stop == after.start
    for c in chunks:
        assert c.size in buckets
        assert c.stop - c.start <= c.size
        # the smallest bucket that fits, so padding is never more than needed
        smaller = [b for b in buckets if b < c.size]
        assert not smaller or smaller[-1] < c.stop - c.start


def test_bucket_for_pads_up_and_caps_at_the_largest() -> None:
    assert [bucket_for(n, DEFAULT_BUCKETS) for n in (1, 2, 3, 5, 17, 64, 65)] == [
        1, 2, 4, 8, 32, 64, 64,
    ]  # fmt: skip
    assert [(c.start, c.stop, c.size) for c in plan(130, DEFAULT_BUCKETS)] == [
        (0, 64, 64), (64, 128, 64), (128, 130, 2),
    ]  # fmt: skip


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)), st.data())
def test_pad_rows_keeps_rows_and_appends_zeros(array: np.ndarray, data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 12))
    out = pad_rows(array, size)
    assert out.shape[0] == max(size, array.shape[0])
    assert out.shape[1:] == array.shape[1:] and out.dtype == array.dtype
    np.testing.assert_array_equal(out[: array.shape[0]], array)
    assert not out[array.shape[0] :].any()


@given(
    rows=st.integers(0, 150),
    features=st.integers(1, 5),
    buckets=bucket_lists,
    seed=st.integers(0, 2**32 - 1),
)
def test_run_bucketed_gives_each_row_its_own_answer_in_order(
    rows: int, features: int, buckets: tuple[int, ...], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    tag = np.arange(rows, dtype=np.int64)  # a second input: the row's own index
    seen: list[int] = []

    def model(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        a, t = arrays
        assert a.shape[0] == t.shape[0]
        seen.append(a.shape[0])
        return [a * 2 + 1, t[:, None] * 10, a.sum(axis=1)]  # three outputs, row-wise

    y, t, s = run_bucketed([x, tag], buckets, model)
    assert y.shape == (rows, features) and t.shape == (rows, 1) and s.shape == (rows,)
    np.testing.assert_array_equal(y, x * 2 + 1)
    np.testing.assert_array_equal(t[:, 0], tag * 10)  # order kept: row i got answer i
    np.testing.assert_allclose(s, x.sum(axis=1), rtol=1e-6)
    assert set(seen) <= set(buckets)  # only bucket shapes ever reach the model
    assert len(seen) == len(plan(rows, buckets))


@given(
    capacity=st.integers(1, 6),
    keys=st.lists(st.integers(0, 9), max_size=60),
)
def test_lru_never_exceeds_its_bound_and_evicts_least_recent(
    capacity: int, keys: list[int]
) -> None:
    cache: LRUCache[int, object] = LRUCache(capacity)
    reference: OrderedDict[int, None] = OrderedDict()  # the obvious model of an LRU
    created = 0
    values: dict[int, object] = {}
    for key in keys:
        value, new = cache.get_or_create(key, object)
        assert new == (key not in reference)
        if new:
            created += 1
            values[key] = value
        else:
            assert value is values[key]  # a hit returns the very object compiled before
        reference[key] = None
        reference.move_to_end(key)
        while len(reference) > capacity:
            reference.popitem(last=False)
        assert len(cache) <= capacity
        assert cache.keys() == list(reference)
    assert cache.evictions == created - len(cache)


def test_lru_rejects_a_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LRUCache(0)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, BucketPolicy(DEFAULT_BUCKETS, 16, ())),
        ({"batch_buckets": [8, 1, 4, 4], "prewarm": True}, BucketPolicy((1, 4, 8), 16, (1, 4, 8))),
        ({"batch_buckets": [1, 2], "compile_cache_size": 3, "prewarm": [2]},
         BucketPolicy((1, 2), 3, (2,))),
        ({"batch_buckets": list(range(1, 21))}, BucketPolicy(tuple(range(1, 21)), 20, ())),
    ],
)  # fmt: skip
def test_policy_from_settings(settings: dict[str, object], expected: BucketPolicy) -> None:
    assert BucketPolicy.from_settings(settings) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_bucket": [1]}, "unknown jax settings"),
        ({"batch_buckets": []}, "non-empty list"),
        ({"batch_buckets": [0, 2]}, "positive integers"),
        ({"batch_buckets": [True]}, "positive integers"),
        ({"compile_cache_size": 0}, "compile_cache_size"),
        ({"batch_buckets": [1, 2], "prewarm": [3]}, "prewarm"),
        ({"batch_buckets": [1, 2, 4], "compile_cache_size": 2, "prewarm": True}, "cache holds 2"),
    ],
)
def test_policy_refuses_bad_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BucketPolicy.from_settings(settings)
