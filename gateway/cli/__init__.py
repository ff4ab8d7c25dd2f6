"""CLI: `servegate`. Importing the command modules registers their commands on `app`."""

from gateway.cli import calls, models, route, tools, up  # noqa: F401  (they register commands)
from gateway.cli.app import app

__all__ = ["app"]
