#!/bin/bash
# PID 1 of a TorchServe container (compose and Kubernetes; the official image's own
# entrypoint backgrounds TorchServe and tails /dev/null, so it never exits or drains).
#
# Runs TorchServe in the foreground in a process group of its own, from the folder its
# token-authorization key file should land in (TS_KEY_DIR, shared read-only with the
# gateway). SIGTERM goes to the whole group (launcher, Java frontend, Python workers),
# which then get TS_STOP_GRACE_S to exit before SIGKILL; when TorchServe exits by itself,
# so does the container, with its status, and the restart policy takes over.
# Extra arguments go to torchserve (Kubernetes adds --disable-token-auth).
set -uo pipefail
cd "${TS_KEY_DIR:-/home/model-server}"
mkdir -p "${LOG_LOCATION:-/tmp/ts-logs}" "${METRICS_LOCATION:-/tmp/ts-logs}"
export LOG_LOCATION=${LOG_LOCATION:-/tmp/ts-logs} METRICS_LOCATION=${METRICS_LOCATION:-/tmp/ts-logs}
setsid torchserve --start --foreground --ncs --ts-config "${TS_CONFIG:-/etc/torchserve/config.properties}" "$@" &
group=$!

stop() {
  kill -TERM -- "-$group" 2>/dev/null
  for _ in $(seq $((${TS_STOP_GRACE_S:-8} * 5))); do
    kill -0 -- "-$group" 2>/dev/null || exit 0
    sleep 0.2
  done
  kill -KILL -- "-$group" 2>/dev/null
  exit 0
}
trap stop TERM INT

wait "$group"
status=$?
kill -KILL -- "-$group" 2>/dev/null  # the frontend died: no worker outlives it
exit "$status"
