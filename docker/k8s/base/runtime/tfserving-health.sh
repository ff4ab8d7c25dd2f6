#!/bin/bash
# TF Serving container healthcheck (bash only: the official image has no curl or Python).
# Healthy when every model in the model config answers AVAILABLE on the REST API
# (GET /v1/models/NAME), asked over bash's /dev/tcp. Exit 0 healthy, 1 not.
set -uo pipefail
config=${TFS_MODEL_CONFIG:-/models/.tfserving/models.config}
port=${TFS_REST_PORT:-8501}
names=$(sed -n 's/^ *name: *"\([^"]*\)".*/\1/p' "$config") || exit 1
[ -n "$names" ] || exit 1
for name in $names; do
  exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
  printf 'GET /v1/models/%s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$name" >&3
  reply=$(timeout 2 cat <&3)
  exec 3<&-
  grep -Eq '"state" *: *"AVAILABLE"' <<<"$reply" || exit 1
done
