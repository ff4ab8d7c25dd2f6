"""Admission: concurrency per variant and the byte budget; refusals are immediate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admission import Admission
from gateway.errors import Overloaded, PayloadTooLarge


def test_concurrency_per_variant_refuses_at_once_with_a_hint() -> None:
    adm = Admission(max_queued_bytes=1000)
    tickets = [adm.hold(10) for _ in range(3)]
    for t in tickets[:2]:
        t.enter("m@a", limit=2, retry_after=0.3)
    with pytest.raises(Overloaded, match="2 requests in flight") as info:
        tickets[2].enter("m@a", limit=2, retry_after=0.3)
    assert info.value.retry_after == 0.3
    tickets[2].enter("m@b", limit=2, retry_after=0.3)  # another variant has room
    tickets[0].release()
    t = adm.hold(10)
    t.enter("m@a", limit=2, retry_after=0.3)  # a slot came free
    assert adm.inflight("m@a") == 2 and adm.inflight("m@b") == 1


def test_byte_budget_is_429_while_full_and_413_when_no_budget_ever_fits() -> None:
    adm = Admission(max_queued_bytes=100)
    held = adm.hold(80)
    with pytest.raises(Overloaded, match="holds 80 bytes") as info:
        adm.hold(30)
    assert info.value.retry_after is not None
    with pytest.raises(PayloadTooLarge) as too_big:
        adm.hold(101)
    assert too_big.value.retry_after is None  # never a retryable answer
    held.release()
    adm.hold(100).release()
    assert adm.queued_bytes == 0


def test_a_ticket_moves_between_variants_and_resizes() -> None:
    adm = Admission(max_queued_bytes=100)
    t = adm.hold(0)
    t.enter("m@a", limit=1, retry_after=0.1)
    t.enter("m@b", limit=1, retry_after=0.1)  # the body pinned another variant
    assert adm.inflight("m@a") == 0 and adm.inflight("m@b") == 1
    t.resize(60, retry_after=0.1)  # a chunked body turned out 60 bytes long
    assert adm.queued_bytes == 60
    with pytest.raises(PayloadTooLarge):
        t.resize(200, retry_after=0.1)
    t.release()
    t.release()  # idempotent
    assert adm.queued_bytes == 0 and adm.inflight("m@b") == 0


@given(st.lists(st.tuples(st.integers(0, 60), st.sampled_from("ab"), st.booleans()), max_size=40))
def test_accounting_returns_to_zero_and_never_exceeds_bounds(
    ops: list[tuple[int, str, bool]],
) -> None:
    adm = Admission(max_queued_bytes=100)
    live = []
    for nbytes, variant, release_first in ops:
        if release_first and live:
            live.pop(0).release()
        try:
            t = adm.hold(nbytes)
        except (Overloaded, PayloadTooLarge):
            continue
        try:
            t.enter(f"m@{variant}", limit=3, retry_after=0.1)
        except Overloaded:
            t.release()
            continue
        live.append(t)
        assert adm.queued_bytes <= 100
        assert adm.inflight("m@a") <= 3 and adm.inflight("m@b") <= 3
    for t in live:
        t.release()
    assert adm.queued_bytes == 0 and adm.inflight("m@a") == adm.inflight("m@b") == 0
