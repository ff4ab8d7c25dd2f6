"""Runner processes die with the gateway that started them, even when it is SIGKILLed.

The supervisor starts every runner with SERVEGATE_PARENT_PID set to its own pid; the
runner arms Linux's parent-death signal for itself as it starts (`die_with_parent`), and
exits at once if that parent is already gone. Arming it in the runner, not in a
preexec_fn, keeps the gateway's spawn a plain fork+exec: running Python in a forked child
of a process whose gRPC threads are busy can abort that child (seen: SIGABRT from gRPC's
epoll poller in the child).
"""

from __future__ import annotations

import ctypes
import os
import signal

PARENT_ENV = "SERVEGATE_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Arms `sig` for when the supervising gateway dies; a no-op when run by hand."""
    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    if not parent:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
