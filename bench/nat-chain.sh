#!/usr/bin/env bash
# ADD and DEL latency of a bridge (ipMasq) + host-local + portmap conflist, driven by `corral cni` as a runtime
# would, in a throwaway node namespace: the NAT path's cost in isolation (docs/nat.md, "Transactions").
#   bench/nat-chain.sh                 # N=15 containers, ipMasq, portmap without a mapping
#   PUB=1 bench/nat-chain.sh           # each container also publishes a port (8000+i -> 80)
#   MASQ=false NOPM=1 bench/nat-chain.sh   # no NAT at all: the reference point
#   N=50 BIN=/path/to/release bench/nat-chain.sh
# Prints the median ADD and DEL in ms. Root; release binaries (cargo build --release --workspace --bins).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$root/target/release}"
N="${N:-15}"
[ "$(id -u)" -eq 0 ] || { echo "nat-chain.sh: run as root" >&2; exit 2; }
for b in corral bridge host-local portmap; do
    [ -x "$BIN/$b" ] || { echo "nat-chain.sh: $BIN/$b missing: cargo build --release --workspace --bins" >&2; exit 2; }
done
tag=$$
node="ncn$tag"
work="$(mktemp -d /tmp/corral-nat-chain.XXXXXX)"
cleanup() {
    set +e
    for n in $(ip netns list | awk -v p="ncc$tag-" 'index($1, p) == 1 {print $1}'); do ip netns del "$n"; done
    ip netns del "$node" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$node"
ip -n "$node" link set lo up
portmap=',{"type":"portmap","capabilities":{"portMappings":true},"snat":true}'
[ -n "${NOPM:-}" ] && portmap=''
cat >"$work/chain.conflist" <<EOF
{"cniVersion":"1.1.0","name":"natchain","plugins":[
 {"type":"bridge","bridge":"ncbr$tag","isGateway":true,"ipMasq":${MASQ:-true},
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$work/ipam"}}
 $portmap
]}
EOF
CORRAL_STATE_DIR="$work/state" python3 - "$BIN" "$work" "$node" "ncc$tag-" "$N" "${PUB:-}" <<'PY'
import statistics, subprocess, sys, time
bin_dir, work, node, prefix, n, publish = sys.argv[1:]
adds, dels = [], []
for i in range(int(n)):
    ns = f"{prefix}{i}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    cmd = ["nsenter", f"--net=/run/netns/{node}", f"{bin_dir}/corral", "cni"]
    args = ["--conflist", f"{work}/chain.conflist", "--cni-path", bin_dir, "--id", ns, "--netns", f"/run/netns/{ns}"]
    if publish:
        args += ["-p", f"{8000 + i}:80"]
    for verb, out in (("add", adds), ("del", dels)):
        start = time.perf_counter()
        subprocess.run(cmd + [verb] + args, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - start) * 1000)
    subprocess.run(["ip", "netns", "del", ns], check=True)
print(f"n={n} add median {statistics.median(adds):.1f} ms, del median {statistics.median(dels):.1f} ms")
PY
