#!/usr/bin/env bash
# Installs everything berth needs on Debian 12 (as root) and builds it. Idempotent: a second
# run installs nothing new and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  runc conmon catatonit                 # OCI runtime, per-container monitor, sandbox infra process
  containernetworking-plugins iptables iproute2 util-linux  # CNI plugins and the tools they and we call
  docker-registry                       # the local registry tests and the main job push images to
  busybox-static                        # the test and demo images are built from it
  zstd attr openssl apache2-utils       # zstd layers, overlay xattrs, test TLS certs, htpasswd
  socat                                 # attach stdin (conmon's SOCK_SEQPACKET socket) and port-forward
  skopeo umoci                          # tests check pushed and saved images with other tools
  criu                                  # CheckpointContainer (runc checkpoint)
  prometheus                            # promtool checks the metrics endpoint's text format (the service is never started)
  g++ make python3                      # node-gyp builds better-sqlite3 and node-pty (no prebuilt downloads offline)
  ca-certificates
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (berth manages namespaces, mounts and cgroups)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d answering 101 ("action forbidden") keeps postinst scripts (prometheus's) from starting services
  # on a host running systemd: setup only wants the tools. An existing policy-rc.d is left as it is.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi

# kubectl drives the streaming interop tests (src/streaming/kubectl.test.ts). A kubectl already on the machine
# is kept (the image ships 1.32, which speaks WebSocket v5 and SPDY): Debian's kubernetes-client (1.20) is
# installed only where none exists, so it never overwrites the newer one at /usr/bin/kubectl.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: no kubectl found, installing kubernetes-client"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi

# The Debian registry package may start its own service on :5000; berth never uses that one.

# npm ci only when the lock file changed since the last install (it rebuilds better-sqlite3).
stamp=node_modules/.berth-lock-hash
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ -L node_modules ]; then
  # A node_modules shared by several work trees (a symlink): npm ci would first empty the shared tree, breaking
  # every other user of it mid-run. Install in the tree that owns it instead.
  echo "setup: node_modules is a symlink to $(readlink -f node_modules); not running npm ci here"
elif [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi

npm run build --silent
chmod +x dist/src/bin/*.js   # run directly, so their #! lines (node flags) apply

# A default CNI network for pods, only when the host has none (berthd never writes it itself).
# Written to a temp file first: a failed command must not leave an empty config behind.
conf=/etc/cni/net.d/10-berth.conflist
if [ -z "$(ls /etc/cni/net.d/*.conflist /etc/cni/net.d/*.conf /etc/cni/net.d/*.json 2>/dev/null)" ] || { [ -f "$conf" ] && [ ! -s "$conf" ]; }; then
  mkdir -p /etc/cni/net.d
  node dist/src/bin/berthd.js cni-default > "$conf.tmp"
  mv "$conf.tmp" "$conf"
  echo "setup: wrote $conf"
fi
