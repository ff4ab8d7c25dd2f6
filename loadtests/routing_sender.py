"""Load tests: a v2 gRPC sender that notes which variant answered each request.

As loadtests/senders.py's GrpcSender (`async (index, timeout_s) -> code`, bodies encoded
once before the clock starts), but every answer is parsed for its parameters: the
routing benchmark counts `parameters.variant` (who served it), `hedged` (a hedge call
was sent) and `mirrored` (a shadow copy went out). Parsing a digits answer costs a few
microseconds of upb; the tensors are decoded and checked only every `check_every`-th.
"""

from __future__ import annotations

from collections import Counter

from gateway.protocol import v2_grpc
from gateway.protocol.pb import v2_pb2
from loadtests.arrivals import WRONG_ANSWER
from loadtests.senders import GrpcSender
from loadtests.workload import Workload

UNNAMED = "(none)"  # an answer without parameters.variant


class VariantGrpcSender(GrpcSender):
    """v2 ModelInfer over one grpc.aio channel, counting answers by serving variant."""

    def __init__(
        self,
        address: str,
        model_ref: str,
        workload: Workload,
        *,
        check_every: int = 50,
        api_key: str | None = None,
    ) -> None:
        super().__init__(address, model_ref, workload, check_every=check_every, api_key=api_key)
        self.reset()

    def reset(self) -> None:
        """Starts counting afresh (before each measured window)."""
        self.served: Counter[str] = Counter()
        self.hedged = 0
        self.mirrored = 0

    async def __call__(self, index: int, timeout_s: float) -> str:
        k = index % len(self.bodies)
        reply = await self.send(k, timeout_s)
        if isinstance(reply, str):
            return reply
        msg = v2_pb2.ModelInferResponse.FromString(reply)
        params = msg.parameters
        self.served[params["variant"].string_param if "variant" in params else UNNAMED] += 1
        if "hedged" in params and params["hedged"].bool_param:
            self.hedged += 1
        if "mirrored" in params:
            self.mirrored += 1
        if self.check_every and index % self.check_every == 0:
            outputs = {t.name: t.data for t in v2_grpc.response_from_pb(msg).outputs}
            problem = self.workload.check(k, outputs)
            if problem is not None:
                self.examples.note(WRONG_ANSWER, problem)
                return WRONG_ANSWER
        return "OK"
