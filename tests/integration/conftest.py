"""Integration tests share tests/conftest.py's live fixtures; names re-exported for imports."""

from tests.live import RunningGateway, start_gateway

__all__ = ["RunningGateway", "start_gateway"]
