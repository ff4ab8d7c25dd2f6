"""The event loop every servegate process runs on: uvloop when it is installed, else
asyncio's own. uvloop's sockets, timers and cross-thread wake-ups (a runner's model
thread handing back its answer) cost less per call; the standard loop still serves
where uvloop is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs `main` to completion on a new loop, as asyncio.run does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
