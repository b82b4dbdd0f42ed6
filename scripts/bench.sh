#!/usr/bin/env bash
# The benchmark (`npm run bench [-- --quick] [-- --pods N --rounds R]`): berth side by side with containerd.
#
# Installs what it needs (scripts/setup.sh for berth and its tools, then Debian's containerd package) and runs
# bench/bench.ts, which starts its own berthd and its own containerd on private directories and stops both.
# The system containerd is never started or configured: installing the package is all this script does to it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench: run as root (both runtimes manage namespaces, mounts and cgroups)" >&2
  exit 1
fi

bash scripts/setup.sh

if ! dpkg-query -W -f='${Status}' containerd 2>/dev/null | grep -q "install ok installed"; then
  echo "bench: installing containerd (Debian's package; its service is kept stopped and disabled)"
  # policy-rc.d answering 101 ("action forbidden") keeps the package's postinst from starting containerd.service
  # on a host running systemd. An existing policy-rc.d is left as it is (it already decides).
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  restore_policy() { if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap restore_policy EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends containerd >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends containerd >/dev/null
  }
  # postinst enables the unit for the next boot; the bench only ever runs its own containerd.
  DPKG_MAINTSCRIPT_PACKAGE=containerd deb-systemd-helper disable containerd.service >/dev/null 2>&1 || true
  restore_policy
  trap - EXIT
fi

# buildah is the baseline of the build bench (--build); Debian's 1.28 runs with --isolation chroot here.
if ! dpkg-query -W -f='${Status}' buildah 2>/dev/null | grep -q "install ok installed"; then
  echo "bench: installing buildah"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null
  }
fi

exec node --import tsx bench/bench.ts "$@"
