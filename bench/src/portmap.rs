//! `cni-bench portmap`: port publishing, corral against the reference plugins in the same run. Three parts:
//!
//! 1. **steady**: the conflist-equivalent chain bridge (+ host-local) → portmap per container, one TCP mapping
//!    each, S containers ADDed then DELed per side (sides alternating call by call); chain and portmap-alone
//!    latencies, medians, p95, ratio corral/reference.
//! 2. **scaling**: ADD of the 1st … Nth container with every earlier one still attached, in buckets of
//!    container numbers (1-10, 91-110, 191-210, …, last 20), and the ratio last/first bucket per side; then
//!    the DELs, bucketed by how many containers were attached.
//! 3. **list-nat**: corral's state populated with M one-mapping attachments through the nat crate (records +
//!    one reconcile, or `NatManager::add` each), then `corral list-nat --json` and `corral list-nat` timed;
//!    and a few portmap ADD/DELs on top of the M mappings.
//!
//! Each side has its own node namespace (so corral's nft table and the reference's iptables rules never
//! meet), bridge, /16 subnet, IPAM dataDir and CORRAL_STATE_DIR. The main thread `setns`es into a side's node
//! namespace before each call (untimed), so the plugins are spawned directly there.

use crate::{machine, machine_header, ms, print_report, radix36, stats, sys, wait_idle, LoadMeter};
use corral_nat::{
    AttachmentRecord, NatManager, NftCli, Owner, PortForwarding, PortMapping, Protocol, RecordStore, Source,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cni-bench portmap [options]   (as root)
  -s, --steady S        steady part: S chain ADDs then DELs per side (default 100; 0: skip)
  -n, --containers N    scaling part: containers kept attached, corral (default 1000; 0: skip)
      --ref-containers M  scaling part: containers kept attached, reference (default 300)
  -w, --warmup W        untimed chain ADD/DEL pairs per side first (default 5)
  -m, --nat-mappings K  list-nat part: one-mapping attachments in corral's state (default 10000; 0: skip)
      --nat-runs R      list-nat part: timed runs of each output format (default 10)
      --populate HOW    list-nat part: `records` (nat crate store writes + one reconcile, default) or
                        `add` (NatManager::add per attachment: the plugin's code path, O(K) each today)
      --corral-dir DIR  corral's binaries (default: <workspace>/target/release)
      --ref-dir DIR     reference plugin binaries (default: /usr/lib/cni)
      --only SIDE       steady and scaling parts on one side only: corral | reference
      --verify-every K  TCP check through the published port every K-th container, and the last
                        (default 10 in the steady part, 100 when scaling)
      --json            JSON on stdout (the tables go to stderr)
      --wait-idle SECS  first wait up to SECS for other work to leave the CPUs idle (default 60; 0: don't)
  -h, --help";

const STEADY_OPS: [&str; 6] = [
    "ADD chain",
    "ADD portmap",
    "ADD bridge",
    "DEL chain",
    "DEL portmap",
    "DEL bridge",
];

/// The list-nat part's subnet (its own node namespace, dummy link holding the gateway).
const NAT_NET: [u8; 2] = [10, 203];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Populate {
    Records,
    Add,
}

#[derive(Debug, Clone)]
pub struct Opts {
    steady: usize,
    n: usize,
    ref_n: usize,
    warmup: usize,
    nat_mappings: usize,
    nat_runs: usize,
    populate: Populate,
    corral_dir: PathBuf,
    ref_dir: PathBuf,
    only: Option<String>,
    verify_every: Option<usize>,
    json: bool,
    wait_idle: u64,
}

pub fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        steady: 100,
        n: 1000,
        ref_n: 300,
        warmup: 5,
        nat_mappings: 10_000,
        nat_runs: 10,
        populate: Populate::Records,
        corral_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
        ref_dir: PathBuf::from("/usr/lib/cni"),
        only: None,
        verify_every: None,
        json: false,
        wait_idle: 60,
    };
    let mut args = std::env::args().skip(2);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "-s" | "--steady" => o.steady = num(val(&a)?)?,
            "-n" | "--containers" => o.n = num(val(&a)?)?,
            "--ref-containers" => o.ref_n = num(val(&a)?)?,
            "-w" | "--warmup" => o.warmup = num(val(&a)?)?,
            "-m" | "--nat-mappings" => o.nat_mappings = num(val(&a)?)?,
            "--nat-runs" => o.nat_runs = num(val(&a)?)?.max(1),
            "--populate" => {
                o.populate = match val(&a)?.as_str() {
                    "records" => Populate::Records,
                    "add" => Populate::Add,
                    s => return Err(format!("--populate: records or add, not {s:?}")),
                }
            }
            "--corral-dir" => o.corral_dir = PathBuf::from(val(&a)?),
            "--ref-dir" => o.ref_dir = PathBuf::from(val(&a)?),
            "--only" => {
                let s = val(&a)?;
                if s != "corral" && s != "reference" {
                    return Err(format!("--only: corral or reference, not {s:?}"));
                }
                o.only = Some(s);
            }
            "--verify-every" => o.verify_every = Some(num(val(&a)?)?.max(1)),
            "--json" => o.json = true,
            "--wait-idle" => o.wait_idle = num(val(&a)?)? as u64,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    // Host ports: scaling 20000.., steady 30000.., warm-up 32000.., list-nat 1024.., extra ADDs 60000...
    if o.n.max(o.ref_n) > 10_000 || o.steady.max(o.warmup) > 2_000 {
        return Err("at most 10000 scaling and 2000 steady/warm-up containers per side".into());
    }
    if o.nat_mappings > 50_000 {
        return Err("--nat-mappings: at most 50000 (one host port each)".into());
    }
    Ok(o)
}

/// One implementation under test: its node namespace, network, binaries and samples.
struct Side {
    label: &'static str,
    node: PathBuf,
    node_id: (u64, u64),
    bin_dir: PathBuf,
    state_dir: PathBuf,
    data_dir: PathBuf,
    gateway: Ipv4Addr,
    network: String,
    bridge_conf: Value,
    portmap_conf: Value,
    samples: BTreeMap<&'static str, Vec<f64>>,
    /// Scaling: (k-th container, chain ms, portmap ms).
    scale_add: Vec<(usize, f64, f64)>,
    /// Scaling: (containers attached before the DEL, chain ms, portmap ms).
    scale_del: Vec<(usize, f64, f64)>,
    skipped: Option<String>,
}

/// One container: id, namespace, its published host port, and the results once it has them.
struct Ctr {
    id: String,
    ns: String,
    host_port: u16,
    /// bridge's ADD result: portmap's prevResult.
    bridge_result: Option<Value>,
    /// The chain's final result (portmap's output), as a runtime caches it for DEL.
    result: Option<Value>,
}

/// Timings of one chain call, ms.
struct ChainTimes {
    chain: f64,
    portmap: f64,
    bridge: f64,
}

fn with(conf: &Value, extra: &[(&str, Value)]) -> Value {
    let mut conf = conf.clone();
    if let Some(m) = conf.as_object_mut() {
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
    }
    conf
}

impl Side {
    fn new(label: &'static str, src: &Path, octet: u8, root: &Path, node: String) -> Result<Self, String> {
        let dir = root.join(label);
        sys::temp_dir(&dir)?;
        let mkdir = |d: PathBuf| {
            std::fs::create_dir(&d)
                .map(|()| d.clone())
                .map_err(|e| format!("creating {}: {e}", d.display()))
        };
        let data_dir = mkdir(dir.join("ipam"))?;
        let state_dir = mkdir(dir.join("state"))?;
        let bin_dir = mkdir(dir.join("bin"))?;
        let short = &label[..3];
        let network = format!("pmbench-{short}");
        // Private copies: a concurrent `cargo build` cannot swap a binary mid-run.
        let mut bins = vec!["bridge", "host-local", "portmap"];
        if label == "corral" {
            bins.push("corral");
        }
        for b in bins {
            let from = src.join(b);
            if !from.is_file() {
                return Err(format!("{label}: {} is missing", from.display()));
            }
            std::fs::copy(&from, bin_dir.join(b)).map_err(|e| format!("copying {}: {e}", from.display()))?;
        }
        let bridge_conf = json!({
            "cniVersion": "1.0.0",
            "name": network,
            "type": "bridge",
            "bridge": format!("br-{short}"),
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "subnet": format!("10.{octet}.0.0/16"),
                "dataDir": data_dir.display().to_string(),
            },
        });
        // What libcni hands the second plugin of the conflist: the plugin object plus the list's cniVersion
        // and name; runtimeConfig and prevResult are added per call.
        let portmap_conf = json!({
            "cniVersion": "1.0.0",
            "name": network,
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        });
        let node_path = PathBuf::from(format!("/run/netns/{node}"));
        sys::netns_add(std::slice::from_ref(&node))?;
        let node_id = sys::ns_id(&node_path)?;
        Ok(Side {
            label,
            node: node_path,
            node_id,
            bin_dir,
            state_dir,
            data_dir,
            gateway: Ipv4Addr::new(10, octet, 0, 1),
            network,
            bridge_conf,
            portmap_conf,
            samples: BTreeMap::new(),
            scale_add: Vec::new(),
            scale_del: Vec::new(),
            skipped: None,
        })
    }

    /// Moves the calling (main) thread into this side's node namespace; children spawned afterwards start
    /// there.
    fn enter(&self) -> Result<(), String> {
        sys::enter_netns(&self.node)?;
        sys::assert_in_netns(self.node_id)
    }

    fn record(&mut self, op: &'static str, v: f64) {
        self.samples.entry(op).or_default().push(v);
    }

    fn portmap_stdin(&self, c: &Ctr, prev: Option<&Value>) -> Vec<u8> {
        let mut extra = vec![(
            "runtimeConfig",
            json!({"portMappings": [{"hostPort": c.host_port, "containerPort": 80, "protocol": "tcp"}]}),
        )];
        if let Some(p) = prev {
            extra.push(("prevResult", p.clone()));
        }
        with(&self.portmap_conf, &extra).to_string().into_bytes()
    }

    fn bridge_stdin(&self, prev: Option<&Value>) -> Vec<u8> {
        match prev {
            Some(p) => with(&self.bridge_conf, &[("prevResult", p.clone())]),
            None => self.bridge_conf.clone(),
        }
        .to_string()
        .into_bytes()
    }

    /// Calls `plugin` (see [`crate::invoke::timed_call`]).
    fn call(
        &self,
        plugin: &str,
        cmd: &str,
        id: &str,
        netns: &str,
        stdin: &[u8],
    ) -> (Duration, Result<Value, String>) {
        let call = crate::invoke::Call {
            bin_dir: &self.bin_dir,
            state_dir: &self.state_dir,
            plugin,
            cmd,
            id,
            netns,
            label: self.label,
        };
        crate::invoke::timed_call(&call, stdin)
    }
}

/// `<bin_dir>/corral list-nat [--json]` in the current namespace over `state_dir`; (wall time, stdout).
fn list_nat(bin_dir: &Path, state_dir: &Path, json: bool) -> (Duration, Result<String, String>) {
    let mut command = Command::new(bin_dir.join("corral"));
    command
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CORRAL_STATE_DIR", state_dir)
        .arg("list-nat")
        .stdin(Stdio::null());
    if json {
        command.arg("--json");
    }
    let t0 = Instant::now();
    let out = command.output();
    let took = t0.elapsed();
    let res = match out {
        Err(e) => Err(format!("corral list-nat: {e}")),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "corral list-nat: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    };
    (took, res)
}

struct Bench {
    opts: Opts,
    tag: String,
    root: PathBuf,
    sides: Vec<Side>,
    failures: Vec<String>,
    verified: usize,
    seq: usize,
    /// The list-nat part's results: op → samples (ms), and notes.
    nat: Vec<(String, Vec<f64>)>,
    nat_notes: Vec<String>,
}

impl Bench {
    fn active(&self) -> Vec<usize> {
        (0..self.sides.len())
            .filter(|&i| self.sides[i].skipped.is_none())
            .collect()
    }

    /// Sides in the order for step `i`: as listed on even steps, reversed on odd ones.
    fn order(&self, i: usize) -> Vec<usize> {
        let mut a = self.active();
        if i % 2 == 1 {
            a.reverse();
        }
        a
    }

    fn fail(&mut self, e: String) {
        if self.failures.len() < 20 {
            eprintln!("FAILED: {e}");
        }
        self.failures.push(e);
    }

    /// `counts[side]` new containers per side (host ports from `port_base`), their namespaces created
    /// (untimed, one `ip -batch`).
    fn containers(&mut self, counts: &[usize], phase: &str, port_base: u16) -> Result<Vec<Vec<Ctr>>, String> {
        let mut all = Vec::new();
        let mut names = Vec::new();
        for (s, &count) in self.sides.iter().zip(counts) {
            let mut v = Vec::new();
            for i in 0..count {
                self.seq += 1;
                let id = format!("{}-{}-{}-{}", self.tag, &s.label[..3], phase, self.seq);
                let ns = format!("{}-c{}", self.tag, self.seq);
                names.push(ns.clone());
                let host_port = u16::try_from(i)
                    .ok()
                    .and_then(|i| port_base.checked_add(i))
                    .ok_or("host port out of range")?;
                v.push(Ctr {
                    id,
                    ns,
                    host_port,
                    bridge_result: None,
                    result: None,
                });
            }
            all.push(v);
        }
        sys::netns_add(&names)?;
        // Let the kernel finish what namespace creation queued before anything is timed.
        std::thread::sleep(Duration::from_millis(200 + names.len() as u64));
        Ok(all)
    }

    fn drop_containers(&mut self, ctrs: &[Vec<Ctr>]) -> Result<(), String> {
        let names: Vec<String> = ctrs.iter().flatten().map(|c| c.ns.clone()).collect();
        sys::netns_del(&names)?;
        // Namespace teardown is asynchronous in the kernel: let it finish before the next timed phase.
        std::thread::sleep(Duration::from_millis(500 + 2 * names.len() as u64));
        Ok(())
    }

    /// bridge ADD then portmap ADD (prevResult: bridge's result), timed together and apart.
    fn chain_add(&mut self, s: usize, c: &mut Ctr) -> Result<Option<ChainTimes>, String> {
        let side = &self.sides[s];
        side.enter()?;
        let netns = format!("/run/netns/{}", c.ns);
        let bstdin = side.bridge_stdin(None);
        let t0 = Instant::now();
        let (db, rb) = side.call("bridge", "ADD", &c.id, &netns, &bstdin);
        let rb = match rb {
            Ok(v) => v,
            Err(e) => {
                self.fail(e);
                return Ok(None);
            }
        };
        let pstdin = side.portmap_stdin(c, Some(&rb));
        let (dp, rp) = side.call("portmap", "ADD", &c.id, &netns, &pstdin);
        let chain = t0.elapsed();
        c.bridge_result = Some(rb);
        match rp {
            Ok(v) => {
                c.result = Some(v);
                Ok(Some(ChainTimes {
                    chain: ms(chain),
                    portmap: ms(dp),
                    bridge: ms(db),
                }))
            }
            Err(e) => {
                self.fail(e);
                Ok(None)
            }
        }
    }

    /// portmap DEL then bridge DEL, both with the cached result as prevResult (and portmap with the
    /// mappings: the reference does nothing without them).
    fn chain_del(&mut self, s: usize, c: &Ctr) -> Result<Option<ChainTimes>, String> {
        let side = &self.sides[s];
        side.enter()?;
        let netns = format!("/run/netns/{}", c.ns);
        let prev = c.result.as_ref().or(c.bridge_result.as_ref());
        let pstdin = side.portmap_stdin(c, prev);
        let bstdin = side.bridge_stdin(prev);
        let t0 = Instant::now();
        let (dp, rp) = side.call("portmap", "DEL", &c.id, &netns, &pstdin);
        let (db, rb) = side.call("bridge", "DEL", &c.id, &netns, &bstdin);
        let chain = t0.elapsed();
        let mut ok = true;
        for r in [rp, rb] {
            if let Err(e) = r {
                self.fail(e);
                ok = false;
            }
        }
        Ok(ok.then_some(ChainTimes {
            chain: ms(chain),
            portmap: ms(dp),
            bridge: ms(db),
        }))
    }

    /// Untimed: a TCP server on port 80 in the container answers through the published port, both at
    /// 127.0.0.1:hostPort and at the gateway address on the bridge, from the side's node namespace.
    fn verify_tcp(&mut self, s: usize, c: &Ctr) -> Result<(), String> {
        if c.result.is_none() {
            return Ok(());
        }
        let side = &self.sides[s];
        side.enter()?;
        let ns_path = PathBuf::from(format!("/run/netns/{}", c.ns));
        let token = format!("cni-bench {}\n", c.id);
        let targets = [Ipv4Addr::LOCALHOST, side.gateway];
        let what = format!("{} verify {} (host port {})", side.label, c.id, c.host_port);
        let outcome: Result<(), String> = std::thread::scope(|sc| {
            let (tx, rx) = mpsc::channel();
            let server = sc.spawn(|| serve(&ns_path, &token, targets.len(), tx));
            let mut res = match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(r) => r,
                Err(e) => Err(format!("TCP server did not start: {e}")),
            };
            if res.is_ok() {
                for ip in targets {
                    if let Err(e) = fetch(SocketAddr::new(IpAddr::V4(ip), c.host_port), &token) {
                        res = Err(format!("{ip}:{}: {e}", c.host_port));
                        break;
                    }
                }
            }
            let served = server
                .join()
                .unwrap_or_else(|_| Err("TCP server thread panicked".into()));
            res.and(served)
        });
        match outcome {
            Ok(()) => self.verified += 1,
            Err(e) => self.fail(format!("{what}: {e}")),
        }
        Ok(())
    }

    /// Untimed, after a part's DELs: host-local released every address, and no port mapping is left
    /// (corral: `corral list-nat --json` shows no DNAT entry, kernel or record; reference: no DNAT rule in
    /// the node namespace's iptables nat table).
    fn verify_clean(&mut self) -> Result<(), String> {
        for s in self.active() {
            let side = &self.sides[s];
            side.enter()?;
            let dir = side.data_dir.join(&side.network);
            let left: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.parse::<IpAddr>().is_ok())
                        .collect()
                })
                .unwrap_or_default();
            let mappings = if side.label == "corral" {
                let (_, out) = list_nat(&side.bin_dir, &side.state_dir, true);
                out.and_then(|o| serde_json::from_str::<Value>(&o).map_err(|e| e.to_string()))
                    .map(|v| v["dnat"].as_array().map_or(0, Vec::len))
            } else {
                sys::run("iptables", &["-w", "-t", "nat", "-S"])
                    .map(|o| o.lines().filter(|l| l.contains("-j DNAT")).count())
            };
            let label = side.label;
            match mappings {
                Err(e) => self.fail(format!("{label}: listing port mappings: {e}")),
                Ok(0) if left.is_empty() => self.verified += 1,
                Ok(n) => self.fail(format!(
                    "{label}: after DEL: {n} port mappings left, IPs still allocated: {left:?}"
                )),
            }
        }
        Ok(())
    }

    fn record_chain(&mut self, s: usize, add: bool, t: &ChainTimes) {
        let ops = if add {
            ["ADD chain", "ADD portmap", "ADD bridge"]
        } else {
            ["DEL chain", "DEL portmap", "DEL bridge"]
        };
        let side = &mut self.sides[s];
        side.record(ops[0], t.chain);
        side.record(ops[1], t.portmap);
        side.record(ops[2], t.bridge);
    }

    /// The steady part (or the warm-up): `n` chain ADDs per side, sides alternating, then the DELs.
    // Indexes `ctrs[side][i]` with the side order changing per step.
    #[allow(clippy::needless_range_loop)]
    fn steady(&mut self, n: usize, timed: bool) -> Result<(), String> {
        if n == 0 {
            return Ok(());
        }
        let (phase, base) = if timed { ("s", 30_000) } else { ("w", 32_000) };
        let counts: Vec<usize> = (0..self.sides.len())
            .map(|s| if self.sides[s].skipped.is_none() { n } else { 0 })
            .collect();
        let mut ctrs = self.containers(&counts, phase, base)?;
        let every = self.opts.verify_every.unwrap_or(10);
        let sample = |i: usize| !timed || i % every == 0 || i + 1 == n;
        for i in 0..n {
            for s in self.order(i) {
                let mut c = std::mem::replace(&mut ctrs[s][i], Ctr::empty());
                let t = self.chain_add(s, &mut c)?;
                if let (true, Some(t)) = (timed, t) {
                    self.record_chain(s, true, &t);
                }
                if sample(i) {
                    self.verify_tcp(s, &c)?;
                }
                ctrs[s][i] = c;
            }
        }
        for i in 0..n {
            for s in self.order(i) {
                let c = std::mem::replace(&mut ctrs[s][i], Ctr::empty());
                let t = self.chain_del(s, &c)?;
                if let (true, Some(t)) = (timed, t) {
                    self.record_chain(s, false, &t);
                }
                ctrs[s][i] = c;
            }
        }
        self.verify_clean()?;
        self.drop_containers(&ctrs)
    }

    /// The scaling part: chain ADDs of the 1st … n-th container per side, all kept attached (sides
    /// alternating while both have containers left), then the DELs in the same order.
    #[allow(clippy::needless_range_loop)]
    fn scaling(&mut self) -> Result<(), String> {
        let counts: Vec<usize> = (0..self.sides.len())
            .map(|s| match (&self.sides[s].skipped, s) {
                (Some(_), _) => 0,
                (None, 0) => self.opts.n,
                (None, _) => self.opts.ref_n,
            })
            .collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        if max == 0 {
            return Ok(());
        }
        let mut ctrs = self.containers(&counts, "k", 20_000)?;
        let every = self.opts.verify_every.unwrap_or(100);
        let t0 = Instant::now();
        for i in 0..max {
            for s in self.order(i) {
                if i >= counts[s] {
                    continue;
                }
                let mut c = std::mem::replace(&mut ctrs[s][i], Ctr::empty());
                if let Some(t) = self.chain_add(s, &mut c)? {
                    self.sides[s].scale_add.push((i + 1, t.chain, t.portmap));
                }
                if i % every == 0 || i + 1 == counts[s] {
                    self.verify_tcp(s, &c)?;
                }
                ctrs[s][i] = c;
            }
            if (i + 1) % 100 == 0 {
                eprintln!(
                    "  {} attached per side ({:.0} s)",
                    i + 1,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        for i in 0..max {
            for s in self.order(i) {
                if i >= counts[s] {
                    continue;
                }
                let c = std::mem::replace(&mut ctrs[s][i], Ctr::empty());
                if let Some(t) = self.chain_del(s, &c)? {
                    self.sides[s].scale_del.push((counts[s] - i, t.chain, t.portmap));
                }
                ctrs[s][i] = c;
            }
            if (i + 1) % 100 == 0 {
                eprintln!(
                    "  {} detached per side ({:.0} s)",
                    i + 1,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        self.verify_clean()?;
        self.drop_containers(&ctrs)
    }

    /// The list-nat part, corral only, in its own node namespace: K one-mapping attachments, then timed
    /// `corral list-nat --json` / `corral list-nat`, then a few timed portmap ADD/DELs on top.
    fn list_nat_part(&mut self) -> Result<(), String> {
        let k = self.opts.nat_mappings;
        if k == 0 {
            return Ok(());
        }
        let node = format!("{}-nat", self.tag);
        let node_path = PathBuf::from(format!("/run/netns/{node}"));
        // Ten namespaces the records point at: the attachments look alive (not stale) to list-nat.
        let holders: Vec<String> = (0..10).map(|i| format!("{}-l{i}", self.tag)).collect();
        let mut all = vec![node.clone()];
        all.extend(holders.iter().cloned());
        sys::netns_add(&all)?;
        let node_id = sys::ns_id(&node_path)?;
        sys::enter_netns(&node_path)?;
        sys::assert_in_netns(node_id)?;
        let gw = format!("{}.{}.0.1/16", NAT_NET[0], NAT_NET[1]);
        // Stands in for the bridge: portmap looks up the node link routing to the container (route_localnet);
        // no dummy module on every kernel, so a veth pair.
        for args in [
            vec!["link", "set", "lo", "up"],
            vec![
                "link",
                "add",
                "natbr",
                "type",
                "veth",
                "peer",
                "name",
                "natbr-peer",
            ],
            vec!["addr", "add", &gw, "dev", "natbr"],
            vec!["link", "set", "natbr", "up"],
            vec!["link", "set", "natbr-peer", "up"],
        ] {
            sys::run("ip", &args)?;
        }
        let dir = self.root.join("listnat");
        sys::temp_dir(&dir)?;
        let state = dir.join("state");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .ok();
        let mut inodes = Vec::new();
        for h in &holders {
            inodes.push(sys::ns_id(Path::new(&format!("/run/netns/{h}")))?.1);
        }
        let network = "pmbench-nat";
        let record = |i: usize| -> Result<AttachmentRecord, String> {
            let ip = nat_ip(i)?;
            let host_port = u16::try_from(1024 + i).map_err(|e| e.to_string())?;
            let mut r = AttachmentRecord::with_source(
                Owner::new(network, format!("{}-nat-{i}", self.tag), "eth0"),
                Source::Portmap,
            );
            r.ports = Some(PortForwarding {
                mappings: vec![PortMapping {
                    protocol: Protocol::Tcp,
                    host_ip: None,
                    host_port,
                    container_ip: IpAddr::V4(ip),
                    container_port: 80,
                }],
                subnets: vec![format!("{}.{}.0.0/16", NAT_NET[0], NAT_NET[1])
                    .parse()
                    .map_err(|e| format!("subnet: {e}"))?],
                snat: true,
                masq_all: false,
            });
            r.netns = Some(PathBuf::from(format!(
                "/run/netns/{}",
                holders[i % holders.len()]
            )));
            r.netns_ino = Some(inodes[i % inodes.len()]);
            r.boot_id = boot.clone();
            Ok(r)
        };
        let mgr = NatManager::new(&state, NftCli::new());
        eprintln!("list-nat: populating {k} mappings ({:?})...", self.opts.populate);
        let t0 = Instant::now();
        match self.opts.populate {
            Populate::Records => {
                let store: &RecordStore = mgr.store();
                let lock = store.lock().map_err(|e| e.to_string())?;
                for i in 0..k {
                    store
                        .write(&lock, &record(i)?)
                        .map_err(|e| format!("writing record {i}: {e}"))?;
                }
                drop(lock);
                self.nat
                    .push(("populate: write records".into(), vec![ms(t0.elapsed())]));
                let t1 = Instant::now();
                let rep = mgr.reconcile().map_err(|e| format!("reconcile: {e}"))?;
                self.nat
                    .push(("populate: reconcile".into(), vec![ms(t1.elapsed())]));
                if rep.records != k || !rep.conflicts.is_empty() || !rep.unreadable.is_empty() {
                    self.fail(format!(
                        "reconcile: {} records re-applied (want {k}), {} conflicts, {} unreadable",
                        rep.records,
                        rep.conflicts.len(),
                        rep.unreadable.len()
                    ));
                }
            }
            Populate::Add => {
                let mut each = Vec::with_capacity(k);
                for i in 0..k {
                    let r = record(i)?;
                    let t = Instant::now();
                    mgr.add(&r).map_err(|e| format!("NatManager::add {i}: {e}"))?;
                    each.push(ms(t.elapsed()));
                    if (i + 1) % 1000 == 0 {
                        eprintln!("  {} added ({:.0} s)", i + 1, t0.elapsed().as_secs_f64());
                    }
                }
                self.nat.push(("populate: total".into(), vec![ms(t0.elapsed())]));
                let n = each.len();
                self.nat
                    .push(("NatManager::add first 100".into(), each[..n.min(100)].to_vec()));
                self.nat.push((
                    "NatManager::add last 100".into(),
                    each[n.saturating_sub(100)..].to_vec(),
                ));
            }
        }
        let corral = self
            .sides
            .first()
            .filter(|s| s.label == "corral")
            .ok_or("no corral side")?;
        let (bin, portmap_conf) = (corral.bin_dir.clone(), corral.portmap_conf.clone());
        // Untimed correctness: every mapping listed, recorded and in the kernel, owner known, not stale.
        let (_, out) = list_nat(&bin, &state, true);
        let check = out.and_then(|o| serde_json::from_str::<Value>(&o).map_err(|e| e.to_string()));
        let verdict = match &check {
            Err(e) => Err(format!("list-nat --json: {e}")),
            Ok(v) => {
                let dnat = v["dnat"].as_array().map(Vec::as_slice).unwrap_or_default();
                let good = dnat
                    .iter()
                    .filter(|e| e["state"] == "active" && e["stale"].is_null() && e["owner"].is_object())
                    .count();
                if good == k && dnat.len() == k {
                    Ok(())
                } else {
                    Err(format!(
                        "list-nat --json: {} entries, {good} active/owned/live, want {k}",
                        dnat.len()
                    ))
                }
            }
        };
        match verdict {
            Ok(()) => self.verified += 1,
            Err(e) => self.fail(e),
        }
        // One untimed run of each first (page cache), then alternate the formats.
        let mut sizes = [0usize; 2];
        for (j, json) in [true, false].into_iter().enumerate() {
            let (_, o) = list_nat(&bin, &state, json);
            sizes[j] = o.map(|o| o.len()).unwrap_or(0);
        }
        let mut runs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut errors = Vec::new();
        for r in 0..self.opts.nat_runs {
            for j in [r % 2, 1 - r % 2] {
                let (d, o) = list_nat(&bin, &state, j == 0);
                match o {
                    Ok(_) => runs[j].push(ms(d)),
                    Err(e) => errors.push(e),
                }
            }
        }
        let [json_runs, table_runs] = runs;
        self.nat.push(("list-nat --json".into(), json_runs));
        self.nat.push(("list-nat (table)".into(), table_runs));
        self.nat_notes.push(format!(
            "output: --json {} KiB, table {} KiB",
            sizes[0] / 1024,
            sizes[1] / 1024
        ));
        // portmap ADD and DEL with K mappings already in place (a container address of the same subnet,
        // a holder namespace as CNI_NETNS).
        let mut adds = Vec::new();
        let mut dels = Vec::new();
        for j in 0..10 {
            let netns = format!("/run/netns/{}", holders[j % holders.len()]);
            let ip = nat_ip(k + j)?;
            let prev = json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": netns}],
                "ips": [{"address": format!("{ip}/16"), "gateway": gw.trim_end_matches("/16"), "interface": 0}],
            });
            let c = Ctr {
                id: format!("{}-natx-{j}", self.tag),
                ns: String::new(),
                host_port: 60_000 + j as u16,
                bridge_result: None,
                result: None,
            };
            let stdin_side = with(
                &portmap_conf,
                &[
                    ("name", json!(network)),
                    (
                        "runtimeConfig",
                        json!({"portMappings": [{"hostPort": c.host_port, "containerPort": 80, "protocol": "tcp"}]}),
                    ),
                    ("prevResult", prev),
                ],
            )
            .to_string()
            .into_bytes();
            let call = |cmd: &str| {
                let mut command = Command::new(bin.join("portmap"));
                command
                    .env_clear()
                    .env(
                        "PATH",
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    )
                    .env("CNI_COMMAND", cmd)
                    .env("CNI_CONTAINERID", &c.id)
                    .env("CNI_NETNS", &netns)
                    .env("CNI_IFNAME", "eth0")
                    .env("CNI_PATH", &bin)
                    .env("CORRAL_STATE_DIR", &state)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let t0 = Instant::now();
                let out = command.spawn().and_then(|mut child| {
                    if let Some(mut s) = child.stdin.take() {
                        s.write_all(&stdin_side)?;
                    }
                    child.wait_with_output()
                });
                let d = t0.elapsed();
                match out {
                    Ok(o) if o.status.success() => Ok(ms(d)),
                    Ok(o) => Err(format!(
                        "portmap {cmd} {} at {k} mappings: {}: {} {}",
                        c.id,
                        o.status,
                        String::from_utf8_lossy(&o.stdout).trim(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => Err(format!("portmap {cmd}: {e}")),
                }
            };
            match call("ADD") {
                Ok(d) => adds.push(d),
                Err(e) => errors.push(e),
            }
            match call("DEL") {
                Ok(d) => dels.push(d),
                Err(e) => errors.push(e),
            }
        }
        self.nat.push((format!("portmap ADD at {k}"), adds));
        self.nat.push((format!("portmap DEL at {k}"), dels));
        for e in errors {
            self.fail(e);
        }
        // The namespace and its nft table go now; the state dir goes with the temp dir.
        sys::netns_del(&all)
    }
}

/// The list-nat part's i-th container address: 10.203.0.2 + i.
fn nat_ip(i: usize) -> Result<Ipv4Addr, String> {
    let base = u32::from(Ipv4Addr::new(NAT_NET[0], NAT_NET[1], 0, 2));
    u32::try_from(i)
        .ok()
        .filter(|&i| i < 65_000)
        .map(|i| Ipv4Addr::from(base + i))
        .ok_or_else(|| format!("container address {i} out of the /16"))
}

/// In the container namespace at `ns`: listens on 0.0.0.0:80, reports readiness on `ready`, answers
/// `conns` connections with `token`, giving up after 5 s.
fn serve(
    ns: &Path,
    token: &str,
    conns: usize,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let listener = sys::enter_netns(ns).and_then(|()| {
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)).map_err(|e| format!("bind :80: {e}"))?;
        l.set_nonblocking(true).map_err(|e| format!("nonblocking: {e}"))?;
        Ok(l)
    });
    let listener = match listener {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut served = 0;
    while served < conns {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                s.write_all(token.as_bytes()).map_err(|e| format!("write: {e}"))?;
                served += 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(format!("accept ({served} of {conns} served): {e}")),
        }
    }
    Ok(())
}

/// Connects to `addr` and reads everything; it must be `token`.
fn fetch(addr: SocketAddr, token: &str) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut got = String::new();
    s.read_to_string(&mut got).map_err(|e| format!("read: {e}"))?;
    if got == token {
        Ok(())
    } else {
        Err(format!("read {got:?}, want {token:?}"))
    }
}

impl Ctr {
    fn empty() -> Self {
        Ctr {
            id: String::new(),
            ns: String::new(),
            host_port: 0,
            bridge_result: None,
            result: None,
        }
    }
}

/// Inclusive 1-based buckets of container numbers: 1-10, 91-110, 191-210, …, and the last 20.
fn buckets(n: usize) -> Vec<(usize, usize)> {
    if n == 0 {
        return Vec::new();
    }
    let mut v = vec![(1, n.min(10))];
    let mut c = 100;
    while c + 10 < n.saturating_sub(19) {
        v.push((c - 9, c + 10));
        c += 100;
    }
    if n > 10 {
        v.push(((n - 19).max(11), n));
    }
    v
}

/// Per bucket: (bucket, summary of chain ms, summary of portmap ms).
type BucketStats = Vec<((usize, usize), Option<stats::Summary>, Option<stats::Summary>)>;

fn bucket_stats(samples: &[(usize, f64, f64)], n: usize) -> BucketStats {
    buckets(n)
        .into_iter()
        .map(|(lo, hi)| {
            let inb: Vec<&(usize, f64, f64)> = samples.iter().filter(|s| s.0 >= lo && s.0 <= hi).collect();
            let chain: Vec<f64> = inb.iter().map(|s| s.1).collect();
            let pm: Vec<f64> = inb.iter().map(|s| s.2).collect();
            ((lo, hi), stats::summarize(&chain), stats::summarize(&pm))
        })
        .collect()
}

fn line(op: &str, side: &str, sm: &stats::Summary) -> String {
    format!(
        "{:<14} {:<10} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
        op, side, sm.n, sm.median, sm.p95, sm.min, sm.max
    )
}

fn header(first: &str) -> String {
    format!(
        "{:<14} {:<10} {:>5} {:>8} {:>8} {:>8} {:>8}   (ms)\n",
        first, "side", "n", "median", "p95", "min", "max"
    )
}

fn report(b: &Bench, m: &Value) -> (String, Value) {
    let o = &b.opts;
    let mut t = String::new();
    t +=
        &format!(
        "cni-bench portmap: bridge + host-local + portmap (1 TCP mapping per container, snat), cniVersion \
         1.0.0; steady S={} per side (after {} warm-up); scaling N corral={} reference={}; list-nat at {} \
         mappings ({} runs each)\n",
        o.steady,
        o.warmup,
        if b.sides[0].skipped.is_some() { 0 } else { o.n },
        if b.sides.get(1).is_none_or(|s| s.skipped.is_some()) { 0 } else { o.ref_n },
        o.nat_mappings,
        o.nat_runs,
    );
    t += &format!(
        "{}, iptables: {}\n",
        machine_header(m),
        m["iptables"].as_str().unwrap_or("")
    );
    for s in &b.sides {
        if let Some(why) = &s.skipped {
            t += &format!("{}: SKIPPED: {why}\n", s.label);
        }
    }
    let mut j = json!({
        "machine": m,
        "config": {
            "steady": o.steady, "warmup": o.warmup, "scaling_corral": o.n, "scaling_reference": o.ref_n,
            "nat_mappings": o.nat_mappings, "nat_runs": o.nat_runs,
            "populate": format!("{:?}", o.populate).to_lowercase(), "cniVersion": "1.0.0",
        },
        "skipped": b.sides.iter().filter_map(|s| s.skipped.as_ref().map(|w| json!({"side": s.label, "why": w}))).collect::<Vec<_>>(),
    });

    // Steady.
    if o.steady > 0 {
        t += &format!(
            "\nsteady: chain = bridge ADD + portmap ADD (DEL: portmap then bridge), {} containers per side\n",
            o.steady
        );
        t += &header("op");
        let mut steady = serde_json::Map::new();
        for op in STEADY_OPS {
            let mut meds = Vec::new();
            for s in &b.sides {
                let Some(sm) = s.samples.get(op).and_then(|v| stats::summarize(v)) else {
                    meds.push(None);
                    continue;
                };
                t += &line(op, s.label, &sm);
                let mut e = sm.to_json();
                e["samples_ms"] = json!(s.samples.get(op));
                steady.entry(s.label.to_string()).or_insert_with(|| json!({}))[op] = e;
                meds.push(Some(sm));
            }
            if let [Some(c), Some(r)] = meds[..] {
                t += &format!(
                    "{:<14} {:<10} {:>5} {:>8.3} {:>8.3}\n",
                    op,
                    "ratio c/r",
                    "",
                    c.median / r.median,
                    c.p95 / r.p95
                );
                steady.insert(
                    format!("ratio {op}"),
                    json!({"median": c.median / r.median, "p95": c.p95 / r.p95}),
                );
            }
        }
        j["steady"] = Value::Object(steady);
    }

    // Scaling.
    let mut scaling = serde_json::Map::new();
    let mut goal = Vec::new();
    for (verb, pick) in [("ADD", true), ("DEL", false)] {
        let mut any = false;
        let mut block = String::new();
        block += &format!(
            "{:<20} {:<10} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8}   (ms; x1st: median / median of bucket 1-10)\n",
            if pick { "k-th ADD" } else { "DEL, k attached" },
            "side",
            "n",
            "median",
            "p95",
            "min",
            "max",
            "x1st"
        );
        for s in &b.sides {
            let (samples, n) = if pick {
                (&s.scale_add, s.scale_add.iter().map(|x| x.0).max().unwrap_or(0))
            } else {
                (&s.scale_del, s.scale_del.iter().map(|x| x.0).max().unwrap_or(0))
            };
            if samples.is_empty() {
                continue;
            }
            any = true;
            let bs = bucket_stats(samples, n);
            let mut rows = Vec::new();
            for (what, idx) in [("chain", 0usize), ("portmap", 1)] {
                let first = bs.first().and_then(|b| if idx == 0 { b.1 } else { b.2 });
                for ((lo, hi), ch, pm) in &bs {
                    let Some(sm) = (if idx == 0 { ch } else { pm }) else {
                        continue;
                    };
                    let x = first.map_or(f64::NAN, |f| sm.median / f.median);
                    block += &format!(
                        "{:<20} {:<10} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                        format!("{verb} {what} {lo}-{hi}"),
                        s.label,
                        sm.n,
                        sm.median,
                        sm.p95,
                        sm.min,
                        sm.max,
                        x
                    );
                    rows.push(json!({
                        "what": what, "from": lo, "to": hi, "stats": sm.to_json(), "x_first": x,
                    }));
                }
                if let (Some(f), Some(((lo, hi), ch, pm))) = (first, bs.last()) {
                    if let Some(l) = if idx == 0 { ch } else { pm } {
                        let r = l.median / f.median;
                        if pick {
                            goal.push(format!(
                                "{} {what} {r:.2} ({lo}-{hi} vs 1-10){}",
                                s.label,
                                if s.label == "corral" {
                                    if r <= 1.1 {
                                        " MET"
                                    } else {
                                        " NOT MET"
                                    }
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                }
            }
            let raw: Vec<Value> = samples.iter().map(|(k, c, p)| json!([k, c, p])).collect();
            scaling.insert(
                format!("{verb} {}", s.label),
                json!({"n": n, "buckets": rows, "samples_k_chain_portmap_ms": raw}),
            );
        }
        if any {
            t += &format!(
                "\nscaling {verb}: {} (chain = bridge + portmap; portmap alone)\n",
                if pick {
                    "ADD of the k-th container, all earlier ones still attached"
                } else {
                    "DEL with k containers attached (oldest first)"
                }
            );
            t += &block;
        }
    }
    if !goal.is_empty() {
        t += &format!(
            "\ngoal (corral ADD last bucket within 1.1x of the first): {}\n",
            goal.join(", ")
        );
        scaling.insert("last_over_first".into(), json!(goal));
    }
    j["scaling"] = Value::Object(scaling);

    // list-nat.
    if !b.nat.is_empty() {
        t += &format!(
            "\nlist-nat: {} one-mapping attachments in corral's state (populated by {}), own node namespace; \
             corral binary, nft JSON listing + record files\n",
            o.nat_mappings,
            match o.populate {
                Populate::Records => "nat crate store writes + one NatManager::reconcile",
                Populate::Add => "NatManager::add per attachment",
            }
        );
        t += &format!(
            "{:<26} {:>5} {:>8} {:>8} {:>8} {:>8}   (ms)\n",
            "op", "n", "median", "p95", "min", "max"
        );
        let mut nat = serde_json::Map::new();
        for (op, v) in &b.nat {
            if let Some(sm) = stats::summarize(v) {
                t += &format!(
                    "{:<26} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                    op, sm.n, sm.median, sm.p95, sm.min, sm.max
                );
                let mut e = sm.to_json();
                e["samples_ms"] = json!(v);
                nat.insert(op.clone(), e);
            }
        }
        for n in &b.nat_notes {
            t += &format!("{n}\n");
        }
        let goals: Vec<String> = ["list-nat --json", "list-nat (table)"]
            .iter()
            .filter_map(|op| {
                let sm = stats::summarize(&b.nat.iter().find(|(o, _)| o == op)?.1)?;
                Some(format!(
                    "{op} median {:.1} ms {}",
                    sm.median,
                    if sm.median < 200.0 { "MET" } else { "NOT MET" }
                ))
            })
            .collect();
        if !goals.is_empty() {
            t += &format!(
                "goal (list-nat < 200 ms at {}): {}\n",
                o.nat_mappings,
                goals.join(", ")
            );
        }
        nat.insert("notes".into(), json!(b.nat_notes));
        j["list_nat"] = Value::Object(nat);
    }
    t += &format!(
        "\nverified: {} checks passed; plugin/verify failures: {}\n",
        b.verified,
        b.failures.len()
    );
    j["verified"] = json!(b.verified);
    j["failures"] = json!(b.failures);
    (t, j)
}

pub fn run(opts: Opts) -> Result<bool, String> {
    let mut opts = opts;
    for d in [&mut opts.corral_dir, &mut opts.ref_dir] {
        *d = d.canonicalize().map_err(|e| format!("{}: {e}", d.display()))?;
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (it creates network namespaces)".into());
    }
    let tag = format!("pbench{}", radix36(std::process::id()));
    let root = std::env::temp_dir().join(&tag);
    sys::temp_dir(&root)?;
    let mut m = machine(&opts.corral_dir, &opts.ref_dir);
    m["iptables"] = json!(sys::run("iptables", &["--version"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unusable: {e}")));
    let before = wait_idle(Duration::from_secs(opts.wait_idle));
    m["other_load_before"] = json!(before);
    if before >= 0.2 {
        eprintln!("warning: other work keeps {before:.2} CPUs busy: it adds noise to both sides");
    }
    let load = LoadMeter::start();

    let mut sides = vec![
        Side::new("corral", &opts.corral_dir, 201, &root, format!("{tag}-ncor"))?,
        Side::new("reference", &opts.ref_dir, 202, &root, format!("{tag}-nref"))?,
    ];
    for s in &mut sides {
        s.enter()?;
        sys::run("ip", &["link", "set", "lo", "up"])?;
        if opts.only.as_deref().is_some_and(|o| o != s.label) {
            s.skipped = Some("--only".into());
        }
    }
    if sides[1].skipped.is_none() {
        sides[1].enter()?;
        if let Err(e) = sys::run("iptables", &["-w", "-t", "nat", "-S"]) {
            sides[1].skipped = Some(format!(
                "the reference portmap needs iptables in the node namespace (apt-get install iptables): {e}"
            ));
        }
    }
    let mut b = Bench {
        opts: opts.clone(),
        tag,
        root,
        sides,
        failures: Vec::new(),
        verified: 0,
        seq: 0,
        nat: Vec::new(),
        nat_notes: Vec::new(),
    };
    if b.active().is_empty() {
        return Err("no side to run".into());
    }
    eprintln!("warm-up ({} per side)...", opts.warmup);
    b.steady(opts.warmup, false)?;
    eprintln!("steady ({} per side)...", opts.steady);
    b.steady(opts.steady, true)?;
    eprintln!("scaling (corral {}, reference {})...", opts.n, opts.ref_n);
    b.scaling()?;
    if b.sides[0].skipped.is_none() {
        b.list_nat_part()?;
    }
    load.record(&mut m);
    let (table, j) = report(&b, &m);
    print_report(&table, &j, opts.json);
    Ok(b.failures.is_empty())
}
