"""Supervisor: `servegate up` starts each runner as a child process, keeps it alive, knows
its endpoint."""

from gateway.supervisor.process import RunnerFailed
from gateway.supervisor.supervisor import Probing, Supervisor, needed_runners

__all__ = ["Probing", "RunnerFailed", "Supervisor", "needed_runners"]
