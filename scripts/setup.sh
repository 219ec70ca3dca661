#!/usr/bin/env bash
# Installs what corral's build, tests and demo need on a fresh Debian machine (as root). Idempotent.
set -euo pipefail
packages=(
  nftables iproute2 conntrack         # what the plugins drive
  containernetworking-plugins         # the reference plugins, for comparison tests and benchmarks
  iputils-ping netcat-openbsd curl    # traffic in tests
  busybox-static runc                 # the launcher's images and runtime
  tini                                # run --init: /usr/bin/tini-static as the container's PID 1
  podman iptables                     # Podman end-to-end test (CNI backend); iptables for the reference firewall
  containerd                          # containerd CRI end-to-end test
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
