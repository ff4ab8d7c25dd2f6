"""runners/guard.py: stopping the guard stops everything it runs, grandchildren included."""

from __future__ import annotations

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
