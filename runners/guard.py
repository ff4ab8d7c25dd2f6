"""`python -m runners.guard [--grace S] -- ARGV...`: a multi-process server that cannot
outlive the gateway.

A parent-death signal reaches only the gateway's own child, and TorchServe is three
generations deep (launcher -> Java frontend -> Python workers). So the guard arms a
parent-death SIGTERM for itself (runners/lifetime.py), runs ARGV in a process group of its
own and remembers every descendant it sees. On SIGTERM or SIGINT (a stop, or the
gateway's death) it ends them all: SIGTERM to the group (they drain), then SIGKILL to
whatever is left after the grace. When ARGV exits by itself (its frontend died), nothing
is left to drain: the guard SIGKILLs the leftovers at once and exits with ARGV's status,
so the supervisor sees the death. Only the standard library and psutil: it starts in
milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil

from runners.lifetime import PARENT_ENV, die_with_parent

POLL_S = 0.1
SCAN_S = 1.0  # a scan of /proc for descendants costs ~1 ms; the child's exit is cheap to see


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _end(group: int, seen: dict[int, psutil.Process], grace: float) -> None:
    """SIGTERM to the group and every process seen, SIGKILL to what is left after `grace`."""
    procs = [p for p in seen.values() if _running(p)]
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run(argv: list[str], grace: float) -> int:
    """Runs `argv` under guard; returns the status the guard exits with."""
    stop = False

    def on_signal(signum: int, _: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The guard is the child's parent now: a runner of ours under it (TF Serving's stand-in)
    # checks SERVEGATE_PARENT_PID against its parent and would exit at once on the gateway's.
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    child = subprocess.Popen(argv, start_new_session=True, env=env)
    seen: dict[int, psutil.Process] = {}
    scanned = 0.0
    while not stop and child.poll() is None:
        if time.monotonic() - scanned >= SCAN_S:
            for p in _descendants(child.pid):
                seen.setdefault(p.pid, p)
            scanned = time.monotonic()
        time.sleep(POLL_S)
    _end(child.pid, seen, grace if stop else 0.0)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(grace)
    code = child.poll()
    if code is None:
        return 1
    return 128 - code if code < 0 else code  # a signal as a shell reports it


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runners.guard")
    parser.add_argument("--grace", type=float, default=10.0, help="Seconds between TERM and KILL.")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command to guard")
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("no command given")
    die_with_parent(signal.SIGTERM)
    sys.exit(run(argv, ns.grace))


if __name__ == "__main__":
    main()
