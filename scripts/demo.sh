#!/usr/bin/env bash
# corral demo: builds corral, starts corrald inside a throwaway *node* namespace (standing in for a host), builds
# a busybox image from Debian's busybox-static (nothing is downloaded), creates a network, runs a web server
# container with a published port and a second container that fetches its page, shows curl from the node, ps,
# logs and corral's NAT state, then stops and removes everything, whatever happens. Run as root.
# (scripts/demo-cni.sh shows the plugins alone, driven by `corral cni`.)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
scripts/setup.sh
command -v runc >/dev/null || apt-get install -y runc
[ -x /bin/busybox ] || apt-get install -y busybox-static

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building corral (release)"
cargo build --release --workspace --bins
BIN=$PWD/target/release

node=corral-demo-node-$$
work=$(mktemp -d /tmp/corral-demo.XXXXXX)
sock=$work/corral.sock
state=$work/state
corrald_pid=''
corral() { "$BIN"/corral -H "$sock" "$@"; }
cleanup() {
  set +e
  if [ -n "$corrald_pid" ] && [ -S "$sock" ]; then
    for c in $(corral ps -a 2>/dev/null | awk 'NR>1 {print $1}'); do corral rm -f "$c" >/dev/null 2>&1; done
  fi
  [ -n "$corrald_pid" ] && kill "$corrald_pid" 2>/dev/null && wait "$corrald_pid" 2>/dev/null
  for d in "$state"/containers/*/; do
    [ -d "$d" ] || continue
    id=$(basename "$d")
    runc --root "$state/runtime" kill "$id" KILL 2>/dev/null; runc --root "$state/runtime" delete --force "$id" 2>/dev/null
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  ip netns del "$node" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step "a node namespace ($node) and corrald inside it"
ip netns add "$node"
ip -n "$node" link set lo up
nsenter --net=/run/netns/"$node" "$BIN"/corrald --socket "$sock" --state-dir "$state" 2>"$work/corrald.log" &
corrald_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
cat "$work/corrald.log"

step "a busybox image from /bin/busybox (corral image import)"
mkdir -p "$work/rootfs"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -czf "$work/busybox.tar.gz" .
corral image import "$work/busybox.tar.gz" busybox:demo
corral image ls

step "a network (corral network create demo)"
corral network create demo
corral network ls

step "a web server container: httpd with a published port, a read-only bind mount and a named volume"
mkdir -p "$work/www"; echo "hello from the web container" > "$work/www/index.html"
corral run -d --name web --net demo -p 8080:80 -v "$work/www:/www:ro" -v data:/data busybox:demo \
  sh -c 'echo "web: serving /www"; date > /data/started; exec httpd -f -p 80 -h /www'
corral ps
corral volume ls
web_ip=$(corral inspect web | sed -n 's/.*"IPAddress": "\([0-9.]*\)".*/\1/p' | head -1)
echo "web has $web_ip"

step "a second container fetches the page by name (http://web/ via its /etc/hosts), exits with wget's status"
corral run --rm --net demo busybox:demo wget -qO- http://web/

step "the published port from the node: curl http://127.0.0.1:8080/"
sleep 0.2
nsenter --net=/run/netns/"$node" curl -s --max-time 5 http://127.0.0.1:8080/

step "corral list-nat (through corrald: container names beside ids)"
corral list-nat

step "corral logs web"
corral logs web

step "exit codes: corral run returns the container's"
set +e; corral run --rm --net demo busybox:demo sh -c 'exit 3'; echo "exit code: $?"; set -e

step "stop and remove web: CNI DEL releases its address and NAT entries"
corral stop -t 1 web
corral ps -a
corral rm web
corral list-nat

step "the named volume outlives the container"
corral run --rm --net none -v data:/data busybox:demo cat /data/started
corral volume rm data

step "done; cleaning up"
