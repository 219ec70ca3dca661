#!/usr/bin/env bash
# Launcher benchmark (issue 5, item 9): one short-lived networked container, three ways, in the same run:
#   corral  `corral -H <sock> run --rm --net <network> busybox:bench true` (corrald in a node namespace)
#   runc    bare runc + CNI: `ip netns add` + `corral cni add` (the same conflist shape, corral's plugins)
#           + `runc run` of an equivalent bundle + `corral cni del` + `ip netns del`
#   podman  `podman run --rm --network <corral conflist network> --rootfs <busybox dir> true` (podman 4.x, CNI
#           backend, private containers.conf/storage.conf as in tests/tests/podman_support)
# N timed runs per side after W untimed warm-ups, sides interleaved run by run (rotating which goes first);
# prints median / p95 / min / max per side, the ratios and the goals (see bench/README.md, "Launcher").
#   bench/launcher.sh                 # N=20, W=3
#   bench/launcher.sh -n 50 -w 5
#   bench/launcher.sh --no-podman     # corral vs runc + CNI only
#   bench/launcher.sh --json FILE     # also write stats and raw samples (ms) as JSON
# Needs root, release binaries (cargo build --release --workspace --bins), runc, /bin/busybox, python3;
# podman 4.x and conmon for the podman side. Everything happens in throwaway node namespaces; whatever
# happens, corrald is killed, containers, mounts, namespaces, libcni cache entries and temp dirs are removed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$root/target/release"

N=20 W=3 PODMAN=1 JSON=""
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N="$2"; shift 2 ;;
        -w) W="$2"; shift 2 ;;
        --no-podman) PODMAN=0; shift ;;
        --json) JSON="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "launcher.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" -eq 0 ] || { echo "launcher.sh: run as root (it creates namespaces and containers)" >&2; exit 2; }
for b in corrald corral bridge host-local portmap loopback; do
    [ -x "$BIN/$b" ] || { echo "launcher.sh: $BIN/$b missing: cargo build --release --workspace --bins" >&2; exit 2; }
done
for c in runc python3 nsenter ip tar; do
    command -v "$c" >/dev/null || { echo "launcher.sh: $c is missing" >&2; exit 2; }
done
[ -x /bin/busybox ] || { echo "launcher.sh: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 2; }
if [ "$PODMAN" = 1 ] && ! command -v podman >/dev/null; then
    echo "launcher.sh: podman not found: podman side skipped" >&2
    PODMAN=0
fi

tag=$$
node_c="lbc$tag"        # corrald's node
node_r="lbn$tag"        # node of the runc + CNI and podman sides (each its own network, bridge and subnet)
work="$(mktemp -d /tmp/corral-lbench.XXXXXX)"
sock="$work/corral.sock"
state="$work/corrald"
pm="$work/podman"
pnet="lbp$tag"
rnet="lbr$tag"
corrald_pid=""
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

podman_env() {
    env -i PATH="$SYS_PATH" HOME="$pm/home" TMPDIR="$pm/tmp" CONTAINERS_CONF="$pm/containers.conf" \
        CONTAINERS_STORAGE_CONF="$pm/storage.conf" CONTAINERS_REGISTRIES_CONF="$pm/registries.conf" \
        CORRAL_STATE_DIR="$work/cni-state" "$@"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    # The driver (if still running) first: it is in our process group only when interrupted.
    [ -n "${driver_pid:-}" ] && kill "$driver_pid" 2>/dev/null && wait "$driver_pid" 2>/dev/null
    # corral side: containers through corrald, then corrald, then whatever it left.
    if [ -n "$corrald_pid" ]; then
        if [ -S "$sock" ]; then
            for c in $("$BIN"/corral -H "$sock" ps -a 2>/dev/null | awk 'NR>1 {print $1}'); do
                timeout 20 "$BIN"/corral -H "$sock" rm -f "$c" >/dev/null 2>&1
            done
        fi
        kill "$corrald_pid" 2>/dev/null; wait "$corrald_pid" 2>/dev/null
    fi
    for d in "$state"/containers/*/; do
        [ -d "$d" ] || continue
        id=$(basename "$d")
        runc --root "$state/runtime" kill "$id" KILL 2>/dev/null
        runc --root "$state/runtime" delete --force "$id" 2>/dev/null
    done
    # runc side: containers of its private runc root, container namespaces (CNI DEL with the cached result).
    for d in "$work"/runc-root/*/; do
        [ -d "$d" ] || continue
        id=$(basename "$d")
        runc --root "$work/runc-root" kill "$id" KILL 2>/dev/null
        runc --root "$work/runc-root" delete --force "$id" 2>/dev/null
    done
    for ns in /run/netns/lbx"$tag"-*; do
        [ -e "$ns" ] || continue
        n=$(basename "$ns")
        [ -e /run/netns/"$node_r" ] && CORRAL_STATE_DIR="$work/cni-state" nsenter --net=/run/netns/"$node_r" \
            "$BIN"/corral cni del --conflist "$work/runc.conflist" --cni-path "$BIN" --id "$n" --netns "$ns" \
            >/dev/null 2>&1
        ip netns del "$n" 2>/dev/null
    done
    # podman side: its containers, then libcni's cached results for its network (not configurable in 4.3).
    if [ "$PODMAN" = 1 ] && [ -f "$pm/containers.conf" ]; then
        podman_env nsenter --net=/run/netns/"$node_r" timeout 60 podman rm -a -f -t 0 >/dev/null 2>&1
        rm -f /var/lib/cni/results/"$pnet"-* 2>/dev/null
        rm -rf /var/lib/corral/nat/"$pnet" /var/lib/cni/networks/"$pnet" 2>/dev/null
    fi
    # Mounts under the work dir (overlays, netns pins, podman shm), deepest first, then the namespaces and dir.
    awk '{print $5}' /proc/self/mountinfo | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    ip netns del "$node_c" 2>/dev/null
    ip netns del "$node_r" 2>/dev/null
    rm -rf "$work" 2>/dev/null || { sleep 0.5; rm -rf "$work"; }
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- node namespaces, corrald -------------------------------------------------------------------------
ip netns add "$node_c"; ip -n "$node_c" link set lo up
ip netns add "$node_r"; ip -n "$node_r" link set lo up
nsenter --net=/run/netns/"$node_c" "$BIN"/corrald --socket "$sock" --state-dir "$state" \
    </dev/null >/dev/null 2>"$work/corrald.log" &
corrald_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "corrald did not come up:" >&2; cat "$work/corrald.log" >&2; exit 2; }

# --- one busybox rootfs; the corral image, the runc bundle's and podman's rootfs are copies of it ---------
mkrootfs() {
    mkdir -p "$1"/{bin,etc,tmp,proc,sys,dev}
    cp /bin/busybox "$1/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
}
mkrootfs "$work/rootfs"
tar -C "$work/rootfs" -czf "$work/busybox.tar.gz" .
"$BIN"/corral -H "$sock" image import "$work/busybox.tar.gz" busybox:bench >/dev/null
"$BIN"/corral -H "$sock" network create bench >/dev/null
cp "$state/networks/bench.conflist" "$work/corral.conflist"

# The runc side's and podman's conflists: corral's network conflist with their own name, bridge, subnet and
# IPAM dataDir (podman 4.3's libcni takes cniVersion up to 1.0.0).
mkdir -p "$work/cni-state" "$work/runc-root" "$work/bundle" "$pm"/{cni/net.d,storage,run,tmp,home}
python3 - "$work" "$rnet" "$pnet" "$pm" <<'PY'
import json, sys
work, rnet, pnet, pm = sys.argv[1:]
base = json.load(open(f"{work}/corral.conflist"))
for name, bridge, subnet, ver, path in [
        (rnet, "lbr0", "10.231.0.0/16", base["cniVersion"], f"{work}/runc.conflist"),
        (pnet, "lbp0", "10.232.0.0/16", "1.0.0", f"{pm}/cni/net.d/{pnet}.conflist")]:
    c = json.loads(json.dumps(base))
    c["name"], c["cniVersion"] = name, ver
    br = c["plugins"][0]
    br["bridge"] = bridge
    br["ipam"]["ranges"] = [[{"subnet": subnet}]]
    br["ipam"]["dataDir"] = f"{work}/ipam-{name}"
    json.dump(c, open(path, "w"), indent=1)
PY

# The runc bundle: `runc spec`, then args ["true"], no terminal, the rootfs, the netns path set per run.
mkrootfs "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
c["root"]["path"] = "rootfs"
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"] + \
    [{"type": "network", "path": "NETNS"}]
json.dump(c, open(p, "w"), indent=1)
PY

# Podman: private configuration as in tests/tests/podman_support (runc, cgroupfs, lowered ulimits, file
# events and locks, vfs storage, corral's plugins as the only CNI plugin directory).
if [ "$PODMAN" = 1 ]; then
    mkrootfs "$pm/rootfs"
    cat >"$pm/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$pm/events.log"
tmp_dir = "$pm/tmp"
lock_type = "file"
conmon_env_vars = ["PATH=$SYS_PATH", "CORRAL_STATE_DIR=$work/cni-state"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["$BIN"]
network_config_dir = "$pm/cni/net.d"
default_network = "$pnet"
EOF
    printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' "$pm" "$pm" >"$pm/storage.conf"
    : >"$pm/registries.conf"
fi

# --- the timed loop (python3: setns into the runc/podman node once, spawns directly, perf_counter) --------
python3 - "$BIN" "$sock" "$work" "$node_r" "$tag" "$N" "$W" "$PODMAN" "$pm" "$pnet" "$SYS_PATH" "$JSON" <<'PY' &
import ctypes, json, os, platform, statistics, subprocess, sys, time
BIN, sock, work, node, tag, N, W, PODMAN, pm, pnet, SYS_PATH, JSON = sys.argv[1:]
N, W, PODMAN = int(N), int(W), PODMAN == "1"

libc = ctypes.CDLL("libc.so.6", use_errno=True)
fd = os.open(f"/run/netns/{node}", os.O_RDONLY)
if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
    sys.exit(f"setns into {node}: errno {ctypes.get_errno()}")
os.close(fd)
assert os.readlink("/proc/self/ns/net") == os.readlink(f"/proc/{os.getpid()}/ns/net")

DEVNULL = subprocess.DEVNULL
cni_env = {"PATH": SYS_PATH, "CORRAL_STATE_DIR": f"{work}/cni-state"}
pm_env = {"PATH": SYS_PATH, "HOME": f"{pm}/home", "TMPDIR": f"{pm}/tmp",
          "CONTAINERS_CONF": f"{pm}/containers.conf", "CONTAINERS_STORAGE_CONF": f"{pm}/storage.conf",
          "CONTAINERS_REGISTRIES_CONF": f"{pm}/registries.conf", "CORRAL_STATE_DIR": f"{work}/cni-state"}
bundle = f"{work}/bundle"
spec_tmpl = open(f"{bundle}/config.json").read()

def run(argv, env=None, out=False):
    r = subprocess.run(argv, stdin=DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[:4]}… exited {r.returncode}: {r.stdout.decode()[-400:]}{r.stderr.decode()[-800:]}")
    return r.stdout.decode() if out else None

def corral(cmd=("true",)):
    t = time.perf_counter()
    o = run([f"{BIN}/corral", "-H", sock, "run", "--rm", "--net", "bench", "busybox:bench", *cmd], out=True)
    return {"total": time.perf_counter() - t}, o

seq = [0]
def runc_cni(cmd=("true",)):
    seq[0] += 1
    cid = f"lbx{tag}-{seq[0]}"
    ns = f"/run/netns/{cid}"
    spec = json.loads(spec_tmpl)
    spec["process"]["args"] = list(cmd)
    for n in spec["linux"]["namespaces"]:
        if n["type"] == "network":
            n["path"] = ns
    with open(f"{bundle}/config.json", "w") as f:   # untimed: the bundle is written before the clock starts
        json.dump(spec, f)
    cni = [f"{BIN}/corral", "cni"]
    common = ["--conflist", f"{work}/runc.conflist", "--cni-path", BIN, "--id", cid, "--netns", ns]
    parts, out = {}, ""
    t0 = time.perf_counter()
    run(["ip", "netns", "add", cid]); t1 = time.perf_counter()
    run(cni + ["add"] + common, env=cni_env); t2 = time.perf_counter()
    out = run(["runc", "--root", f"{work}/runc-root", "run", "--bundle", bundle, cid], out=True)
    t3 = time.perf_counter()
    run(cni + ["del"] + common, env=cni_env); t4 = time.perf_counter()
    run(["ip", "netns", "del", cid]); t5 = time.perf_counter()
    parts = {"total": t5 - t0, "netns add": t1 - t0, "cni add": t2 - t1, "runc run": t3 - t2,
             "cni del": t4 - t3, "netns del": t5 - t4}
    return parts, out

def podman(cmd=("true",)):
    t = time.perf_counter()
    o = run(["timeout", "120", "podman", "run", "--rm", "--network", pnet, "--rootfs", f"{pm}/rootfs", *cmd],
            env=pm_env, out=True)
    return {"total": time.perf_counter() - t}, o

sides = [("corral", corral), ("runc+CNI", runc_cni)] + ([("podman", podman)] if PODMAN else [])

# Correctness, untimed: each side's container has an address on eth0 from its network.
for name, fn in sides:
    _, o = fn(("ip", "-4", "-o", "addr", "show", "dev", "eth0"))
    if " inet " not in o:
        sys.exit(f"{name}: no IPv4 address on eth0 in the container: {o!r}")
    print(f"check {name:9} eth0: {o.split(' inet ')[1].split()[0]}", file=sys.stderr)

def cpu_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)

samples = {name: [] for name, _ in sides}
parts = {}
b0 = cpu_busy()
for i in range(W + N):
    k = i % len(sides)
    for name, fn in sides[k:] + sides[:k]:   # rotate which side goes first
        p, _ = fn()
        if i >= W:
            samples[name].append(p["total"] * 1000)
            if name == "runc+CNI":
                for key, v in p.items():
                    parts.setdefault(key, []).append(v * 1000)
b1 = cpu_busy()

def pct(xs, q):
    s = sorted(xs)  # nearest rank
    return s[max(0, min(len(s), -(-int(q * len(s) * 1000) // 1000)) - 1)]

def stats(xs):
    return {"n": len(xs), "median": statistics.median(xs), "p95": pct(xs, 0.95), "min": min(xs), "max": max(xs)}

st = {k: stats(v) for k, v in samples.items()}
git = subprocess.run(["git", "-C", os.path.dirname(BIN) + "/..", "describe", "--always", "--dirty"],
                     capture_output=True, text=True).stdout.strip()
versions = {"runc": run(["runc", "--version"], out=True).splitlines()[0]}
if PODMAN:
    versions["podman"] = run(["podman", "--version"], out=True).strip()
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][:1]
print(f"\n{os.cpu_count()} CPUs {cpu[0] if cpu else ''}, kernel {platform.release()}, corral {git}, "
      f"{', '.join(versions.values())}; N={N} after {W} warm-ups, interleaved; "
      f"CPU busy during the run: {(b1[0]-b0[0])/(b1[1]-b0[1])*100:.0f}% of all CPUs (incl. the bench)")
print(f"{'side':18} {'n':>4} {'median':>9} {'p95':>9} {'min':>9} {'max':>9}   (ms)")
for k, s in st.items():
    print(f"{k:18} {s['n']:4} {s['median']:9.1f} {s['p95']:9.1f} {s['min']:9.1f} {s['max']:9.1f}")
for key in ["netns add", "cni add", "runc run", "cni del", "netns del"]:
    s = stats(parts[key])
    print(f"  runc+CNI {key:9} {s['n']:4} {s['median']:9.1f} {s['p95']:9.1f} {s['min']:9.1f} {s['max']:9.1f}")
c, r = st["corral"], st["runc+CNI"]
res = {"corral/runc+CNI": (c["median"] / r["median"], c["p95"] / r["p95"])}
if PODMAN:
    p = st["podman"]
    res["corral/podman"] = (c["median"] / p["median"], c["p95"] / p["p95"])
for k, (m, q) in res.items():
    print(f"ratio {k:14} median {m:.3f}   p95 {q:.3f}")
g1 = res["corral/runc+CNI"][0]
print(f"goal corral <= 1.5x runc+CNI (median): {g1:.2f}x {'MET' if g1 <= 1.5 else 'NOT MET'}")
if PODMAN:
    g2 = res["corral/podman"][0]
    print(f"goal corral <= 1/3 of podman (median): {g2:.3f} {'MET' if g2 <= 1/3 else 'NOT MET'}")
else:
    print("goal corral <= 1/3 of podman: not measured (--no-podman or podman missing)")
if JSON:
    json.dump({"stats": st, "runc_parts": {k: stats(v) for k, v in parts.items()}, "ratios": res,
               "samples": samples, "git": git, "versions": versions, "N": N, "W": W}, open(JSON, "w"), indent=1)
PY
driver_pid=$!
wait "$driver_pid"
driver_pid=""
# Leftovers the sides should not have left (checked before cleanup removes everything anyway).
left=$(ls /run/netns 2>/dev/null | grep -c "^lbx$tag-" || true)
[ "$left" = 0 ] || echo "warning: $left runc-side container namespaces left" >&2
