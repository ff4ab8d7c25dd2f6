"""The committed stubs are exactly what generate.sh makes from the .proto files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PB = Path(__file__).resolve().parents[3] / "gateway" / "protocol" / "pb"


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(PB / "generate.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    fresh = sorted((tmp_path / "gateway" / "protocol" / "pb").glob("*_pb2*"))
    assert fresh, "generate.sh produced nothing"
    for path in fresh:
        committed = PB / path.name
        assert committed.exists(), f"{path.name} is not committed"
        assert committed.read_text() == path.read_text(), f"{path.name} is stale: run generate.sh"
