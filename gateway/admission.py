"""Admission: bounded work at the front door, refused at once rather than queued.

Two bounds, both checked before any work is done for a request: the requests in flight
per variant (batched or not), and the bytes of request bodies the gateway holds at once
(all variants together). Past either, the answer is 429 / RESOURCE_EXHAUSTED with a retry
hint, immediately; a body larger than the byte budget could ever admit is 413, never a
retryable code. The HTTP front end asks before it reads the body (its Content-Length and
the variant its URL names), the gRPC one before it decodes the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.errors import Overloaded, PayloadTooLarge


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted request: its bytes, and the variant slot it holds once it has one."""

    admission: Admission
    nbytes: int
    variant: str | None = None
    _released: bool = field(default=False, repr=False)

    def enter(self, variant: str, limit: int, retry_after: float) -> None:
        """Takes a slot of `variant` (moving out of another one); Overloaded when full."""
        if self.variant == variant:
            return
        self.admission._enter(variant, limit, retry_after)
        if self.variant is not None:
            self.admission._leave(self.variant)
        self.variant = variant

    def resize(self, nbytes: int, retry_after: float) -> None:
        """The body turned out `nbytes` long (no Content-Length was given)."""
        self.admission._rebudget(self.nbytes, nbytes, retry_after)
        self.nbytes = nbytes

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.admission._bytes -= self.nbytes
        if self.variant is not None:
            self.admission._leave(self.variant)


class Admission:
    """The gateway's in-flight requests per variant and the request bytes it holds."""

    def __init__(self, *, max_queued_bytes: int) -> None:
        self.max_queued_bytes = max_queued_bytes
        self._bytes = 0
        self._inflight: dict[str, int] = {}

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def inflight(self, variant: str) -> int:
        return self._inflight.get(variant, 0)

    def hold(self, nbytes: int, retry_after: float = 1.0) -> Ticket:
        """Admits `nbytes` of request body; PayloadTooLarge if no budget ever could."""
        self._rebudget(0, nbytes, retry_after)
        return Ticket(self, nbytes)

    def _rebudget(self, old: int, new: int, retry_after: float) -> None:
        if new > self.max_queued_bytes:
            raise PayloadTooLarge(
                f"request of {new} bytes exceeds the gateway's request byte budget "
                f"({self.max_queued_bytes})"
            )
        if new > old and self._bytes - old + new > self.max_queued_bytes:
            raise Overloaded(
                f"the gateway holds {self._bytes} bytes of requests (budget "
                f"{self.max_queued_bytes}); try again shortly",
                retry_after=retry_after,
            )
        self._bytes += new - old

    def _enter(self, variant: str, limit: int, retry_after: float) -> None:
        n = self._inflight.get(variant, 0)
        if n >= limit:
            raise Overloaded(
                f"variant '{variant}' has {n} requests in flight (max_concurrency {limit})",
                retry_after=retry_after,
            )
        self._inflight[variant] = n + 1

    def _leave(self, variant: str) -> None:
        n = self._inflight[variant] - 1
        if n:
            self._inflight[variant] = n
        else:
            del self._inflight[variant]
