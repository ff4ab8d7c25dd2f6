"""`servegate up` / `serve`: flags override SERVEGATE_* variables, which override defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.app import app
from gateway.cli.up import _settings


def test_flags_that_were_given_win_and_the_environment_fills_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SERVEGATE_HOST", "0.0.0.0")
    monkeypatch.setenv("SERVEGATE_HTTP_PORT", "9000")
    monkeypatch.setenv("SERVEGATE_REPOSITORY", str(tmp_path))
    s = _settings(None, None, 9101, None)
    assert (s.host, s.http_port, s.grpc_port, s.repository) == ("0.0.0.0", 9000, 9101, tmp_path)
    s = _settings("127.0.0.1", 0, None, tmp_path / "other")
    assert (s.host, s.http_port, s.grpc_port) == ("127.0.0.1", 0, 8001)
    assert s.repository == tmp_path / "other"


def test_a_runner_key_file_must_be_kind_equals_path() -> None:
    result = CliRunner().invoke(
        app, ["serve", "--runner-endpoint", "torchserve=127.0.0.1:1", "--runner-key-file", "x"]
    )
    assert result.exit_code == 2
    assert "expected KIND=PATH" in result.output
