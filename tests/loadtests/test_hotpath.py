"""`servegate bench hotpath` drives real requests through both front ends in-process."""

from __future__ import annotations

import argparse

from gateway.config import DEFAULT_REPOSITORY
from loadtests import hotpath


async def test_both_front_ends_answer_and_cost_measurable_cpu() -> None:
    args = argparse.Namespace(
        model="digits", requests=300, concurrency=8, repeat=1, repository=DEFAULT_REPOSITORY
    )
    rows = await hotpath.run(args)  # raises if any request is not answered 200
    assert [front for front, _, _ in rows] == ["gRPC", "HTTP JSON"]
    for _, us, rate in rows:
        assert us > 0 and rate > 0


async def test_the_instant_backend_answers_the_signatures_outputs() -> None:
    plane, model = hotpath.plane_for(DEFAULT_REPOSITORY, "digits")
    plane.start()
    try:
        await hotpath.grpc_call(plane, model)()
        served = plane.model_statistics("digits")
        assert served and served[0]["inference_stats"]["success"]["count"] == 1
    finally:
        await plane.aclose()
