"""Supervisor: `servegate up` starts each runner as a child process and knows its endpoint."""

from gateway.supervisor.process import RunnerFailed
from gateway.supervisor.supervisor import Supervisor

__all__ = ["RunnerFailed", "Supervisor"]
