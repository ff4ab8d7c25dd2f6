"""Supervisor: `servegate up` starts each runner as a child process and knows its endpoint."""

from gateway.supervisor.supervisor import RunnerFailed, Supervisor

__all__ = ["RunnerFailed", "Supervisor"]
