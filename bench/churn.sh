#!/usr/bin/env bash
# Churn throughput, corral against the reference plugins in the same run: N ADD/DEL cycles with W-way
# concurrency across two networks, per side (tests/examples/churn_bench.rs; see bench/README.md, "Churn").
#   bench/churn.sh                       # 400 cycles per side, 4 workers, plain and full chains
#   bench/churn.sh -n 2000 --chain plain # bridge + host-local only
#   bench/churn.sh --help
# Builds corral's plugins in release mode (measured) and the driver in the dev profile (it must unwind on a
# panic so its namespace guards run). Whatever happens, namespaces and state directories the driver named
# after its pid are removed on exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -p corral-bridge -p corral-ipam -p corral-portmap -p corral-loopback --bins
cargo build -p corral-tests --example churn_bench
if [ "$(id -u)" -ne 0 ]; then
    echo "churn.sh: run as root (it creates network namespaces)" >&2
    exit 1
fi

radix36() {
    local n=$1 digits=0123456789abcdefghijklmnopqrstuvwxyz out=""
    while :; do
        out="${digits:$((n % 36)):1}$out"
        n=$((n / 36))
        [ "$n" -eq 0 ] && break
    done
    printf '%s' "$out"
}

driver_pid=""
driver_done=""
cleanup() {
    [ -n "$driver_pid" ] || return 0
    if [ -z "$driver_done" ]; then
        kill "$driver_pid" 2>/dev/null || true
        wait "$driver_pid" 2>/dev/null || true
    fi
    local tag
    tag="$(radix36 "$driver_pid")x"
    # Names are <tag><pid base 36>x<n>: node namespaces crn*, container namespaces chc*.
    for ns in /run/netns/crn"$tag"* /run/netns/chc"$tag"*; do
        [ -e "$ns" ] && ip netns del "$(basename "$ns")" 2>/dev/null || true
    done
    rm -rf /tmp/corral-test-crn"$tag"*
}
trap cleanup EXIT INT TERM

CORRAL_BIN_DIR="$root/target/release" "$root/target/debug/examples/churn_bench" \
    --corral "$root/target/release" "$@" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_done=1
exit "$rc"
