#!/usr/bin/env bash
# Builds corral's plugins and the bench in release mode, then runs cni-bench (as root; through sudo if
# needed) against the reference plugins in /usr/lib/cni. Arguments go to cni-bench, e.g.
#   bench/run.sh                  # defaults: 100 sequential, 3 rounds of 20 parallel, per side
#   bench/run.sh -n 300 --json    # JSON on stdout, table on stderr
#   bench/run.sh --ipmasq         # ipMasq: true on both sides
#   bench/run.sh portmap          # bridge + host-local + portmap chains, scaling to 1000, list-nat at 10,000
#   bench/run.sh --help; bench/run.sh portmap --help
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release --workspace --bins
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo --)
fi
# The reference portmap (Debian 1.1.1) has only the iptables backend: without iptables its side is skipped.
if [ "${1:-}" = portmap ] && ! command -v iptables >/dev/null && command -v apt-get >/dev/null; then
    echo "run.sh: installing iptables for the reference portmap" >&2
    ${sudo[@]+"${sudo[@]}"} apt-get install -y iptables >&2
fi
mode=()
if [ "${1:-}" = portmap ]; then
    mode=(portmap)
    shift
fi
exec ${sudo[@]+"${sudo[@]}"} "$root/target/release/cni-bench" ${mode[@]+"${mode[@]}"} \
    --corral-dir "$root/target/release" "$@"
