#!/usr/bin/env bash
# The main job: install and build berth, start berthd, push the demo images to a local
# registry, and run a real pod from a Kubernetes manifest (examples/web.yaml) that serves HTTP.
# Idempotent: a running berthd, registry or pod is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SOCKET=${BERTH_SOCKET:-/run/berth/berth.sock}
LOG=${BERTH_LOG:-/var/log/berthd.log}
REGISTRY=127.0.0.1:5000
DEMO=/var/lib/berth-demo
berth() { node dist/src/bin/berth.js --socket "$SOCKET" "$@"; }
answers() { node -e 'fetch(process.argv[1]).then(r => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))' "$1"; }

# 1. berthd
if berth version >/dev/null 2>&1; then
  echo "main: berthd already serving on $SOCKET"
else
  echo "main: starting berthd (log: $LOG)"
  mkdir -p "$(dirname "$LOG")"
  nohup dist/src/bin/berthd.js --socket "$SOCKET" >>"$LOG" 2>&1 &
  for _ in $(seq 1 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
fi
berth version
berth info | head -20

# 2. a local registry with the demo images (Debian's docker-registry, loopback only)
if ! answers "http://$REGISTRY/v2/"; then
  echo "main: starting a registry on $REGISTRY (data in $DEMO/registry)"
  mkdir -p "$DEMO/registry/data"
  cat >"$DEMO/registry/config.yml" <<YAML
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $DEMO/registry/data }, delete: { enabled: true } }
http: { addr: $REGISTRY }
YAML
  nohup docker-registry serve "$DEMO/registry/config.yml" >>"$DEMO/registry/registry.log" 2>&1 &
  for _ in $(seq 1 100); do answers "http://$REGISTRY/v2/" && break; sleep 0.1; done
fi

npx tsx test/support/push-fixtures.ts --registry "$REGISTRY" --wait 10 >/dev/null

# 3. the pod: pull, sandbox with CNI networking, container, readiness probe (restarted if present)
berth down examples/web.yaml >/dev/null 2>&1 || true
berth run -d examples/web.yaml
berth get pods
IP=$(berth -o json get pods web | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).ip??""))')
echo "main: GET http://$IP/ from the host:"
node -e 'fetch(process.argv[1]).then(async r => { console.log(r.status, (await r.text()).trim()); process.exit(r.ok ? 0 : 1) })' "http://$IP/"
echo "main: the pod keeps running; stop it with: node dist/src/bin/berth.js down examples/web.yaml"
