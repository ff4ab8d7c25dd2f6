#!/usr/bin/env bash
# Regenerates the Python stubs beside each .proto. The only way they are made: never
# edit a *_pb2*.py by hand. tests/unit/protocol/test_pb_fresh.py checks they match.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:-$root}
cd "$root"
"${PYTHON:-python}" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" \
    gateway/protocol/pb/*.proto
