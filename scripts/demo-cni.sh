#!/usr/bin/env bash
# corral CNI demo (the plugins alone, driven by `corral cni`): builds corral, creates a network inside a throwaway *node* namespace (standing in for a host),
# attaches two containers to it with corral's CNI plugins, serves a web page from one, fetches it from the other,
# publishes its port on the node, and shows corral's NAT state. Everything is removed at the end, whatever
# happens. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
scripts/setup.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building corral (release)"
cargo build --release --workspace --bins
BIN=$PWD/target/release

tag=$$
node=corral-demo-node-$tag
c1=corral-demo-web-$tag
c2=corral-demo-client-$tag
work=$(mktemp -d /tmp/corral-demo.XXXXXX)
export CORRAL_STATE_DIR=$work/state
cleanup() {
  set +e
  for c in web client; do
    ip netns exec "$node" true 2>/dev/null && nsenter --net=/run/netns/"$node" "$BIN"/corral cni del \
      --conflist "$work/net.conflist" --cni-path "$BIN" --id "$c" --netns "/run/netns/corral-demo-$c-$tag" >/dev/null 2>&1
  done
  [ -n "${httpd:-}" ] && kill "$httpd" 2>/dev/null
  ip netns del "$c1" 2>/dev/null; ip netns del "$c2" 2>/dev/null; ip netns del "$node" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step "a node namespace ($node) and two container namespaces"
ip netns add "$node"; ip netns add "$c1"; ip netns add "$c2"
ip -n "$node" link set lo up

portmap='' ; publish=()
if [ -x "$BIN/portmap" ]; then
  portmap=',{"type":"portmap","capabilities":{"portMappings":true},"snat":true}'
  publish=(-p 8080:80)
fi
cat > "$work/net.conflist" <<JSON
{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    { "type": "bridge", "bridge": "demo0", "isGateway": true, "ipMasq": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.77.0.0/24" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$work/ipam" } }$portmap
  ]
}
JSON
echo "network config (a conflist as written for the reference plugins):"; cat "$work/net.conflist"

corral() { nsenter --net=/run/netns/"$node" "$BIN"/corral "$@"; }

step "ADD: attach 'web' and 'client' (corral cni add, run inside the node namespace)"
corral cni add --conflist "$work/net.conflist" --cni-path "$BIN" --id web --netns "/run/netns/$c1" "${publish[@]}"
corral cni add --conflist "$work/net.conflist" --cni-path "$BIN" --id client --netns "/run/netns/$c2" >/dev/null
web_ip=$(ip -n "$c1" -j addr show eth0 | sed -n 's/.*"local":"\(10\.77\.[0-9.]*\)".*/\1/p')
echo "web has $web_ip"; ip -n "$c2" -br addr show eth0

step "a web server in 'web' (busybox httpd), fetched from 'client' by address"
mkdir -p "$work/www"; echo "hello from the web container" > "$work/www/index.html"
nsenter --net=/run/netns/"$c1" busybox httpd -f -p 80 -h "$work/www" & httpd=$!
sleep 0.3
nsenter --net=/run/netns/"$c2" curl -s --max-time 5 "http://$web_ip/"

if [ -n "$portmap" ]; then
  step "published port: node's 127.0.0.1:8080 -> web:80"
  nsenter --net=/run/netns/"$node" curl -s --max-time 5 "http://127.0.0.1:8080/"
  step "corral list-nat"
  corral list-nat
fi

step "CHECK both attachments"
corral cni check --conflist "$work/net.conflist" --cni-path "$BIN" --id web --netns "/run/netns/$c1"
corral cni check --conflist "$work/net.conflist" --cni-path "$BIN" --id client --netns "/run/netns/$c2"

step "corral's nftables table in the node (masquerade set elements, one per container address)"
nsenter --net=/run/netns/"$node" nft list table inet corral

step "DEL 'web' after its namespace is gone: address and NAT elements are still released"
kill "$httpd"; wait "$httpd" 2>/dev/null || true; httpd=''
ip netns del "$c1"
corral cni del --conflist "$work/net.conflist" --cni-path "$BIN" --id web --netns "/run/netns/$c1"
echo "reserved addresses now: $(ls "$work/ipam/demo" | grep -c '^10\.') (was 2)"
nsenter --net=/run/netns/"$node" nft list set inet corral masq_src4

step "done; cleaning up"
