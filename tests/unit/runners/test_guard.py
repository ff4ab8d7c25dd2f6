"""runners/guard.py: stopping the guard stops everything it runs, grandchildren included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

LAUNCHER = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(600)"


def _guard() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "runners.guard", "--grace", "2", "--",
         sys.executable, "-c", LAUNCHER],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _sleeper(guard: subprocess.Popen[bytes]) -> psutil.Process:
    until = time.monotonic() + 20
    while time.monotonic() < until:
        found = [p for p in psutil.Process(guard.pid).children(recursive=True)
                 if p.name() == "sleep"]  # fmt: skip
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the launcher's child never appeared")


def test_sigterm_ends_the_launcher_and_every_descendant() -> None:
    guard = _guard()
    try:
        sleeper = _sleeper(guard)
        time.sleep(1.2)  # the guard scans for descendants once a second
        launcher = psutil.Process(guard.pid).children()[0]
        guard.send_signal(signal.SIGTERM)
        assert guard.wait(10) is not None
        for p in (launcher, sleeper):
            assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()


def test_the_guarded_command_is_told_the_guard_is_its_parent() -> None:
    """A runner of ours under the guard arms its parent-death signal for the guard's pid; told
    the gateway's, it would find a different parent and exit at once."""
    report = "import os; print(os.environ['SERVEGATE_PARENT_PID'], os.getppid())"
    out = subprocess.run(
        [sys.executable, "-m", "runners.guard", "--", sys.executable, "-c", report],
        env={**os.environ, "SERVEGATE_PARENT_PID": str(os.getpid())},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    told, parent = out.stdout.split()
    assert told == parent
    assert int(told) != os.getpid()
