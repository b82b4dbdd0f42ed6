#!/usr/bin/env bash
# The main job: install and build berth, start berthd, and talk to it through the berth CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SOCKET=${BERTH_SOCKET:-/run/berth/berth.sock}
LOG=${BERTH_LOG:-/var/log/berthd.log}
berth() { node dist/src/bin/berth.js --socket "$SOCKET" "$@"; }

if berth version >/dev/null 2>&1; then
  echo "main: berthd already serving on $SOCKET"
else
  echo "main: starting berthd (log: $LOG)"
  mkdir -p "$(dirname "$LOG")"
  nohup node dist/src/bin/berthd.js --socket "$SOCKET" >>"$LOG" 2>&1 &
  for _ in $(seq 1 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
fi

berth version
berth info
