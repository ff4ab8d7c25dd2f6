"""Container tests: the deployment under docker/ checked statically, then run for real.

Everything here is marked `container`. A test that needs a tool this machine lacks (the
Docker engine, the compose plugin, kubectl, promtool, hadolint, ...) is skipped, unless
SERVEGATE_REQUIRE_CONTAINERS=1 (CI sets it after installing them): then it fails.
"""

from __future__ import annotations
