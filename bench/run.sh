#!/usr/bin/env bash
# Builds corral's plugins and the bench in release mode, then runs cni-bench (as root; through sudo if
# needed) against the reference plugins in /usr/lib/cni. Arguments go to cni-bench, e.g.
#   bench/run.sh                  # defaults: 100 sequential, 3 rounds of 20 parallel, per side
#   bench/run.sh -n 300 --json    # JSON on stdout, table on stderr
#   bench/run.sh --ipmasq         # ipMasq: true on both sides
#   bench/run.sh --help
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release --workspace --bins
bench=("$root/target/release/cni-bench" --corral-dir "$root/target/release" "$@")
if [ "$(id -u)" -ne 0 ]; then
    exec sudo -- "${bench[@]}"
fi
exec "${bench[@]}"
