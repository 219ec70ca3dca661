//! `cni-bench`: ADD/DEL latency of corral's `bridge` + `host-local` against the reference CNI plugins, in the
//! same run, inside a throwaway node network namespace. See bench/README.md.
//!
//! Fairness: each side has its own bridge, subnet, IPAM dataDir and CNI_PATH and otherwise the same
//! config; sequential calls alternate sides call by call (corral first on even steps, the reference on odd
//! ones) and parallel rounds alternate which side goes first, so machine noise hits both. Container
//! namespaces are created and deleted untimed, in batches outside the timed loops. A timed call is spawn +
//! config on stdin + wait for exit, measured by the bench process, which has itself entered the node
//! namespace (setns) so the plugin is spawned directly, without nsenter.

mod invoke;
mod portmap;
mod stats;
mod sys;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Barrier;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cni-bench [options]   (as root)
       cni-bench portmap [options]   bridge + host-local + portmap chains, scaling, list-nat (--help)
  -n, --containers N    sequential ADDs then DELs per side (default 100)
  -p, --parallel P      containers per parallel round (default 20)
  -r, --rounds R        parallel rounds per side (default 3)
  -w, --warmup W        untimed ADD/DEL pairs per side first (default 5)
      --corral-dir DIR  corral's plugin binaries (default: <workspace>/target/release)
      --ref-dir DIR     reference plugin binaries (default: /usr/lib/cni)
      --only SIDE       run one side only: corral | reference
      --ipmasq          ipMasq: true (corral: nftables; reference: iptables, skipped if unusable)
      --verify-every K  verify every K-th sequential container, and the last (default 10)
      --json            JSON on stdout (the table goes to stderr)
      --ipam-root DIR   put both sides' IPAM dataDirs under DIR (default: the temp dir, on /tmp); e.g.
                        /dev/shm to take the disk (fsync) out of the numbers
      --wait-idle SECS  first wait up to SECS for other work to leave the CPUs idle (default 60; 0: don't)
  -h, --help";

const OPS: [&str; 6] = [
    "seq ADD",
    "seq DEL",
    "par ADD",
    "par DEL",
    "par ADD wall",
    "par DEL wall",
];

#[derive(Debug, Clone)]
struct Opts {
    n: usize,
    parallel: usize,
    rounds: usize,
    warmup: usize,
    corral_dir: PathBuf,
    ref_dir: PathBuf,
    only: Option<String>,
    ipmasq: bool,
    verify_every: usize,
    json: bool,
    wait_idle: u64,
    ipam_root: Option<PathBuf>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        n: 100,
        parallel: 20,
        rounds: 3,
        warmup: 5,
        corral_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
        ref_dir: PathBuf::from("/usr/lib/cni"),
        only: None,
        ipmasq: false,
        verify_every: 10,
        json: false,
        wait_idle: 60,
        ipam_root: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "-n" | "--containers" => o.n = num(val(&a)?)?,
            "-p" | "--parallel" => o.parallel = num(val(&a)?)?,
            "-r" | "--rounds" => o.rounds = num(val(&a)?)?,
            "-w" | "--warmup" => o.warmup = num(val(&a)?)?,
            "--corral-dir" => o.corral_dir = PathBuf::from(val(&a)?),
            "--ref-dir" => o.ref_dir = PathBuf::from(val(&a)?),
            "--only" => {
                let s = val(&a)?;
                if s != "corral" && s != "reference" {
                    return Err(format!("--only: corral or reference, not {s:?}"));
                }
                o.only = Some(s);
            }
            "--ipmasq" => o.ipmasq = true,
            "--verify-every" => o.verify_every = num(val(&a)?)?.max(1),
            "--json" => o.json = true,
            "--wait-idle" => o.wait_idle = num(val(&a)?)? as u64,
            "--ipam-root" => o.ipam_root = Some(PathBuf::from(val(&a)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// One implementation under test, with its own network and samples.
struct Side {
    label: &'static str,
    bin_dir: PathBuf,
    gateway: String,
    bridge: String,
    data_dir: PathBuf,
    state_dir: PathBuf,
    conf: Value,
    samples: BTreeMap<&'static str, Vec<f64>>,
    /// Why this side was not run, if it was not.
    skipped: Option<String>,
}

/// One container: its id and namespace, and the ADD result once it has one.
struct Ctr {
    id: String,
    ns: String,
    result: Option<Value>,
}

struct Bench {
    opts: Opts,
    tag: String,
    node_id: (u64, u64),
    sides: Vec<Side>,
    failures: Vec<String>,
    verified: usize,
    seq: usize,
}

/// A parallel call: start, end, outcome; Err when the worker could not run it.
type Timed = Result<(Instant, Instant, Result<Value, String>), String>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Side {
    fn new(
        label: &'static str,
        bin_dir: PathBuf,
        octet: u8,
        root: &Path,
        opts: &Opts,
    ) -> Result<Self, String> {
        let ipmasq = opts.ipmasq;
        let dir = root.join(label);
        sys::temp_dir(&dir)?;
        let data_dir = match &opts.ipam_root {
            Some(r) => {
                let name = root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let d = r.join(format!("{name}-{label}-ipam"));
                sys::temp_dir(&d)?;
                d
            }
            None => {
                let d = dir.join("ipam");
                std::fs::create_dir(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
                d
            }
        };
        let state_dir = dir.join("state");
        std::fs::create_dir(&state_dir).map_err(|e| format!("creating {}: {e}", state_dir.display()))?;
        let bridge = format!("br-{}", &label[..3]);
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": format!("bench-{}", &label[..3]),
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": ipmasq,
            "ipam": {
                "type": "host-local",
                "subnet": format!("10.{octet}.0.0/16"),
                "dataDir": data_dir.display().to_string(),
            },
        });
        // Private copies: a concurrent `cargo build` cannot swap a binary mid-run, and both sides start
        // their binaries from the same filesystem.
        let copies = dir.join("bin");
        std::fs::create_dir(&copies).map_err(|e| format!("creating {}: {e}", copies.display()))?;
        for b in ["bridge", "host-local"] {
            let from = bin_dir.join(b);
            if !from.is_file() {
                return Err(format!("{label}: {} is missing", from.display()));
            }
            std::fs::copy(&from, copies.join(b)).map_err(|e| format!("copying {}: {e}", from.display()))?;
        }
        let bin_dir = copies;
        Ok(Side {
            label,
            bin_dir,
            gateway: format!("10.{octet}.0.1"),
            bridge,
            data_dir,
            state_dir,
            conf,
            samples: BTreeMap::new(),
            skipped: None,
        })
    }

    fn record(&mut self, op: &'static str, d: Duration) {
        self.samples.entry(op).or_default().push(ms(d));
    }

    /// Calls `bridge` for `c` (see [`invoke::timed_call`]).
    fn call(&self, cmd: &str, c: &Ctr, stdin: &[u8]) -> (Duration, Result<Value, String>) {
        let netns = format!("/run/netns/{}", c.ns);
        let call = invoke::Call {
            bin_dir: &self.bin_dir,
            state_dir: &self.state_dir,
            plugin: "bridge",
            cmd,
            id: &c.id,
            netns: &netns,
            label: self.label,
        };
        invoke::timed_call(&call, stdin)
    }

    fn add_stdin(&self) -> Vec<u8> {
        self.conf.to_string().into_bytes()
    }

    /// DEL gets the ADD result as prevResult, as libcni-based runtimes pass it from their cache.
    fn del_stdin(&self, c: &Ctr) -> Vec<u8> {
        let mut conf = self.conf.clone();
        if let (Some(r), Some(m)) = (&c.result, conf.as_object_mut()) {
            m.insert("prevResult".into(), r.clone());
        }
        conf.to_string().into_bytes()
    }
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

    /// `count` new containers per active side, their namespaces created (untimed).
    fn containers(&mut self, count: usize, phase: &str) -> Result<Vec<Vec<Ctr>>, String> {
        let mut all = Vec::new();
        let mut names = Vec::new();
        for s in &self.sides {
            let mut v = Vec::new();
            if s.skipped.is_none() {
                for _ in 0..count {
                    self.seq += 1;
                    let id = format!("{}-{}-{}-{}", self.tag, &s.label[..3], phase, self.seq);
                    let ns = format!("{}-c{}", self.tag, self.seq);
                    names.push(ns.clone());
                    v.push(Ctr { id, ns, result: None });
                }
            }
            all.push(v);
        }
        sys::netns_add(&names)?;
        // Let the kernel finish what namespace creation queued before anything is timed.
        std::thread::sleep(Duration::from_millis(200));
        Ok(all)
    }

    fn drop_containers(&mut self, ctrs: &[Vec<Ctr>]) -> Result<(), String> {
        let names: Vec<String> = ctrs.iter().flatten().map(|c| c.ns.clone()).collect();
        sys::netns_del(&names)?;
        // Namespace teardown is asynchronous in the kernel: let it finish before the next timed phase.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    fn fail(&mut self, e: String) {
        if self.failures.len() < 20 {
            eprintln!("FAILED: {e}");
        }
        self.failures.push(e);
    }

    /// One timed ADD; keeps the result on the container.
    fn add(&mut self, s: usize, c: &mut Ctr, op: Option<&'static str>) -> Result<(), String> {
        sys::assert_in_netns(self.node_id)?;
        let side = &self.sides[s];
        let (d, r) = side.call("ADD", c, &side.add_stdin());
        match r {
            Ok(v) => {
                c.result = Some(v);
                if let Some(op) = op {
                    self.sides[s].record(op, d);
                }
            }
            Err(e) => self.fail(e),
        }
        Ok(())
    }

    fn del(&mut self, s: usize, c: &Ctr, op: Option<&'static str>) -> Result<(), String> {
        sys::assert_in_netns(self.node_id)?;
        let side = &self.sides[s];
        let (d, r) = side.call("DEL", c, &side.del_stdin(c));
        match r {
            Ok(_) => {
                if let Some(op) = op {
                    self.sides[s].record(op, d);
                }
            }
            Err(e) => self.fail(e),
        }
        Ok(())
    }

    /// Untimed: the container's eth0 has the address from the result, the host-side veth is on the side's
    /// bridge, and the container reaches the gateway address on the bridge (one ping).
    fn verify_add(&mut self, s: usize, c: &Ctr) {
        let Some(r) = &c.result else { return };
        let side = &self.sides[s];
        let what = format!("{} verify {}", side.label, c.id);
        let want = r["ips"][0]["address"].as_str().unwrap_or("").to_string();
        let got = sys::run("ip", &["-j", "-n", &c.ns, "addr", "show", "dev", "eth0"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .map(|v| {
                v[0]["addr_info"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|i| i["family"] == "inet")
                            .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let gw = side.gateway.clone();
        let ping = sys::run(
            "nsenter",
            &[
                &format!("--net=/run/netns/{}", c.ns),
                "ping",
                "-c1",
                "-W2",
                "-q",
                &gw,
            ],
        );
        let host_veth = r["interfaces"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| i["sandbox"].is_null() && i["name"] != side.bridge.as_str())
            })
            .and_then(|i| i["name"].as_str())
            .unwrap_or("")
            .to_string();
        let master = sys::run("ip", &["-j", "link", "show", "dev", &host_veth])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .and_then(|v| v[0]["master"].as_str().map(String::from))
            .unwrap_or_default();
        if want.is_empty() || !got.contains(&want) {
            self.fail(format!("{what}: result address {want:?}, eth0 has {got:?}"));
        } else if let Err(e) = ping {
            self.fail(format!("{what}: gateway {gw} unreachable: {e}"));
        } else if master != side.bridge {
            self.fail(format!(
                "{what}: host veth {host_veth:?} master {master:?}, not {}",
                side.bridge
            ));
        } else {
            self.verified += 1;
        }
    }

    /// Untimed: eth0 is gone from the container.
    fn verify_del(&mut self, s: usize, c: &Ctr) {
        if sys::run("ip", &["-n", &c.ns, "link", "show", "eth0"]).is_ok() {
            let e = format!(
                "{} verify {}: eth0 still there after DEL",
                self.sides[s].label, c.id
            );
            self.fail(e);
        } else {
            self.verified += 1;
        }
    }

    /// Untimed: host-local released everything (only its bookkeeping files are left).
    fn verify_ipam_empty(&mut self) {
        for s in self.active() {
            let side = &self.sides[s];
            let net = side.conf["name"].as_str().unwrap_or("");
            let dir = side.data_dir.join(net);
            let left: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                        .collect()
                })
                .unwrap_or_default();
            if left.is_empty() {
                self.verified += 1;
            } else {
                let e = format!("{}: IPs still allocated after DEL: {left:?}", side.label);
                self.fail(e);
            }
        }
    }

    /// Sequential ADDs then DELs, sides alternating call by call. `timed` false is the warm-up.
    // Indexes `ctrs[side][i]` with the side order changing per step.
    #[allow(clippy::needless_range_loop)]
    fn sequential(&mut self, n: usize, timed: bool) -> Result<(), String> {
        let phase = if timed { "s" } else { "w" };
        let mut ctrs = self.containers(n, phase)?;
        let every = self.opts.verify_every;
        let sample = |i: usize| !timed || i % every == 0 || i + 1 == n;
        let (add_op, del_op) = if timed {
            (Some("seq ADD"), Some("seq DEL"))
        } else {
            (None, None)
        };
        for i in 0..n {
            for s in self.order(i) {
                let mut c = std::mem::replace(&mut ctrs[s][i], Ctr::empty());
                self.add(s, &mut c, add_op)?;
                if sample(i) {
                    self.verify_add(s, &c);
                }
                ctrs[s][i] = c;
            }
        }
        for i in 0..n {
            for s in self.order(i) {
                let c = std::mem::replace(&mut ctrs[s][i], Ctr::empty());
                self.del(s, &c, del_op)?;
                if sample(i) {
                    self.verify_del(s, &c);
                }
                ctrs[s][i] = c;
            }
        }
        self.verify_ipam_empty();
        self.drop_containers(&ctrs)
    }

    /// `rounds` rounds; in each, per side (which side first alternates), P ADDs started together behind a
    /// barrier, then P DELs the same way.
    fn parallel(&mut self) -> Result<(), String> {
        let p = self.opts.parallel;
        if p == 0 {
            return Ok(());
        }
        for round in 0..self.opts.rounds {
            for s in self.order(round) {
                let mut ctrs = self.containers(p, &format!("p{round}"))?;
                let mut mine = std::mem::take(&mut ctrs[s]);
                for cmd in ["ADD", "DEL"] {
                    let side = &self.sides[s];
                    let node = self.node_id;
                    let barrier = Barrier::new(p);
                    let outcomes: Vec<Timed> = std::thread::scope(|sc| {
                        let handles: Vec<_> = mine
                            .iter()
                            .map(|c| {
                                let barrier = &barrier;
                                sc.spawn(move || {
                                    let stdin = if cmd == "ADD" {
                                        side.add_stdin()
                                    } else {
                                        side.del_stdin(c)
                                    };
                                    let here = sys::assert_in_netns(node);
                                    barrier.wait();
                                    here?;
                                    let t0 = Instant::now();
                                    let (d, r) = side.call(cmd, c, &stdin);
                                    Ok((t0, t0 + d, r))
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|_| Err("worker thread panicked".into())))
                            .collect()
                    });
                    let (op, wall_op) = if cmd == "ADD" {
                        ("par ADD", "par ADD wall")
                    } else {
                        ("par DEL", "par DEL wall")
                    };
                    let mut first: Option<Instant> = None;
                    let mut last: Option<Instant> = None;
                    let mut ok = true;
                    for (c, o) in mine.iter_mut().zip(outcomes) {
                        let (t0, t1, r) = o?;
                        first = Some(first.map_or(t0, |f| f.min(t0)));
                        last = Some(last.map_or(t1, |l| l.max(t1)));
                        match r {
                            Ok(v) => {
                                self.sides[s].record(op, t1 - t0);
                                if cmd == "ADD" {
                                    c.result = Some(v);
                                }
                            }
                            Err(e) => {
                                ok = false;
                                self.fail(e);
                            }
                        }
                    }
                    if let (true, Some(f), Some(l)) = (ok, first, last) {
                        self.sides[s].record(wall_op, l - f);
                    }
                    if let Some(c) = mine.first() {
                        if cmd == "ADD" {
                            self.verify_add(s, c);
                        } else {
                            self.verify_del(s, c);
                        }
                    }
                }
                ctrs[s] = mine;
                self.verify_ipam_empty();
                self.drop_containers(&ctrs)?;
            }
        }
        Ok(())
    }
}

impl Ctr {
    fn empty() -> Self {
        Ctr {
            id: String::new(),
            ns: String::new(),
            result: None,
        }
    }
}

fn radix36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// nproc, CPU model, kernel, corral's git revision, the reference package's version.
fn machine(corral_dir: &Path, ref_dir: &Path) -> Value {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ws = ws.display().to_string();
    let corral = sys::run("git", &["-C", &ws, "describe", "--always", "--dirty"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let reference = if ref_dir == Path::new("/usr/lib/cni") {
        sys::run(
            "dpkg-query",
            &["-W", "-f", "${Version}", "containernetworking-plugins"],
        )
        .map(|v| format!("containernetworking-plugins {v}"))
        .unwrap_or_else(|_| "unknown".into())
    } else {
        "unknown".into()
    };
    json!({
        "nproc": nproc, "cpu": cpu, "kernel": kernel,
        "corral": corral, "corral_dir": corral_dir.display().to_string(),
        "reference": reference, "reference_dir": ref_dir.display().to_string(),
    })
}

/// CPU ticks: (busy on the whole machine, used by this process and its waited-for children).
/// The machine, the load around the run and both sides' versions, as the reports print them (no final newline,
/// so a mode can add to the last line).
fn machine_header(m: &Value) -> String {
    format!(
        "machine: {} CPUs ({}), kernel {}; other work kept {:.2} CPUs busy just before the run, {:.2} on \
         average during it\ncorral: {} ({})\nreference: {} ({})",
        m["nproc"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        m["other_load_before"].as_f64().unwrap_or(-1.0),
        m["other_load_during"].as_f64().unwrap_or(-1.0),
        m["corral"].as_str().unwrap_or(""),
        m["corral_dir"].as_str().unwrap_or(""),
        m["reference"].as_str().unwrap_or(""),
        m["reference_dir"].as_str().unwrap_or(""),
    )
}

fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.get(..8)?.iter().sum::<u64>() - f.get(3)? - f.get(4)?;
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" that closes comm: state is field 3, utime..cstime are fields 14..17.
    let rest: Vec<u64> = me
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((busy, rest.iter().sum()))
}

/// Measures how busy everything else keeps the machine while a run lasts (the report's `other_load_during`).
struct LoadMeter {
    ticks: Option<(u64, u64)>,
    since: Instant,
}

impl LoadMeter {
    fn start() -> Self {
        LoadMeter {
            ticks: cpu_ticks(),
            since: Instant::now(),
        }
    }

    /// Writes `other_load_during` into the machine description `m`, when /proc could be read.
    fn record(&self, m: &mut Value) {
        if let (Some(a), Some(b)) = (self.ticks, cpu_ticks()) {
            m["other_load_during"] = json!(other_load(a, b, self.since.elapsed().as_secs_f64()));
        }
    }
}

/// Prints the report: the table, or with `--json` the table on stderr and the JSON on stdout.
fn print_report(table: &str, j: &Value, json: bool) {
    if json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(j).unwrap_or_default());
    } else {
        print!("{table}");
    }
}

/// Average number of CPUs kept busy by everything else on the machine between two `cpu_ticks` readings.
fn other_load(a: (u64, u64), b: (u64, u64), secs: f64) -> f64 {
    let ticks = b.0.saturating_sub(a.0).saturating_sub(b.1.saturating_sub(a.1));
    // USER_HZ is 100 on every Linux ABI.
    ticks as f64 / 100.0 / secs.max(1e-3)
}

/// Waits (up to `max`) for a second in which other work keeps less than 0.2 CPU busy; returns the last
/// reading.
fn wait_idle(max: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let (Some(a), t0) = (cpu_ticks(), Instant::now()) else {
            return -1.0;
        };
        std::thread::sleep(Duration::from_secs(1));
        let Some(b) = cpu_ticks() else { return -1.0 };
        let load = other_load(a, b, t0.elapsed().as_secs_f64());
        if load < 0.2 || start.elapsed() >= max {
            return load;
        }
        eprintln!("waiting for the machine to go idle (other work: {load:.2} CPUs busy)...");
    }
}

fn report(b: &Bench, m: &Value) -> (String, Value) {
    let o = &b.opts;
    let mut t = String::new();
    t += &format!(
        "cni-bench: bridge + host-local, cniVersion 1.0.0, ipMasq {}; sequential N={} per side (after {} warm-up), \
         parallel {} x {} rounds per side; IPAM dataDirs under {}\n",
        o.ipmasq,
        o.n,
        o.warmup,
        o.parallel,
        o.rounds,
        o.ipam_root
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| std::env::temp_dir().display().to_string())
    );
    t += &machine_header(m);
    t.push('\n');
    for s in &b.sides {
        if let Some(why) = &s.skipped {
            t += &format!("{}: SKIPPED: {why}\n", s.label);
        }
    }
    t += &format!(
        "\n{:<13} {:<10} {:>4} {:>8} {:>8} {:>8} {:>8}   (ms)\n",
        "op", "side", "n", "median", "p95", "min", "max"
    );
    let mut results = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    for op in OPS {
        let mut meds = Vec::new();
        for s in &b.sides {
            let Some(sm) = s.samples.get(op).and_then(|v| stats::summarize(v)) else {
                meds.push(None);
                continue;
            };
            t += &format!(
                "{:<13} {:<10} {:>4} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                op, s.label, sm.n, sm.median, sm.p95, sm.min, sm.max
            );
            let entry = results.entry(s.label.to_string()).or_insert_with(|| json!({}));
            entry[op] = sm.to_json();
            entry[op]["samples_ms"] = json!(s.samples.get(op));
            meds.push(Some(sm));
        }
        if let [Some(c), Some(r)] = meds[..] {
            let (rm, rp) = (c.median / r.median, c.p95 / r.p95);
            t += &format!(
                "{:<13} {:<10} {:>4} {:>8.3} {:>8.3}\n",
                op, "ratio c/r", "", rm, rp
            );
            ratios.insert(op.into(), json!({"median": rm, "p95": rp}));
        }
    }
    let goal: Vec<String> = ["seq ADD", "seq DEL"]
        .iter()
        .filter_map(|op| {
            let r = ratios.get(*op)?["median"].as_f64()?;
            Some(format!(
                "{op} {r:.3} {}",
                if r <= 1.0 / 3.0 { "MET" } else { "NOT MET" }
            ))
        })
        .collect();
    if !goal.is_empty() {
        t += &format!("\ngoal (median <= 1/3 of the reference): {}\n", goal.join(", "));
    }
    t += &format!(
        "verified: {} checks passed; plugin/verify failures: {}\n",
        b.verified,
        b.failures.len()
    );
    let j = json!({
        "machine": m,
        "config": {
            "containers": o.n, "parallel": o.parallel, "rounds": o.rounds, "warmup": o.warmup,
            "ipmasq": o.ipmasq, "cniVersion": "1.0.0",
            "ipam_root": o.ipam_root.as_ref().map(|p| p.display().to_string())
                .unwrap_or_else(|| std::env::temp_dir().display().to_string()),
        },
        "skipped": b.sides.iter().filter_map(|s| s.skipped.as_ref().map(|w| json!({"side": s.label, "why": w}))).collect::<Vec<_>>(),
        "results": results,
        "ratio_corral_over_reference": ratios,
        "verified": b.verified,
        "failures": b.failures,
    });
    (t, j)
}

fn run(opts: Opts) -> Result<bool, String> {
    let mut opts = opts;
    for d in [&mut opts.corral_dir, &mut opts.ref_dir] {
        *d = d.canonicalize().map_err(|e| format!("{}: {e}", d.display()))?;
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (it creates network namespaces)".into());
    }
    let tag = format!("cbench{}", radix36(std::process::id()));
    let root = std::env::temp_dir().join(&tag);
    sys::temp_dir(&root)?;
    let mut m = machine(&opts.corral_dir, &opts.ref_dir);
    let before = wait_idle(Duration::from_secs(opts.wait_idle));
    m["other_load_before"] = json!(before);
    if before >= 0.2 {
        eprintln!("warning: other work keeps {before:.2} CPUs busy: it adds noise to both sides");
    }
    let load = LoadMeter::start();

    // The node namespace plays the host; this thread enters it so every plugin starts there.
    let node = format!("{tag}-node");
    sys::netns_add(std::slice::from_ref(&node))?;
    let node_path = PathBuf::from(format!("/run/netns/{node}"));
    let node_id = sys::ns_id(&node_path)?;
    sys::enter_netns(&node_path)?;
    sys::assert_in_netns(node_id)?;
    sys::run("ip", &["link", "set", "lo", "up"])?;

    let mut sides = vec![
        Side::new("corral", opts.corral_dir.clone(), 201, &root, &opts)?,
        Side::new("reference", opts.ref_dir.clone(), 202, &root, &opts)?,
    ];
    for s in &mut sides {
        if opts.only.as_deref().is_some_and(|o| o != s.label) {
            s.skipped = Some("--only".into());
        }
    }
    if opts.ipmasq && sides[1].skipped.is_none() {
        if let Err(e) = sys::run("iptables", &["-w", "-t", "nat", "-S"]) {
            sides[1].skipped = Some(format!("ipMasq needs iptables in the node namespace: {e}"));
        }
    }
    let mut b = Bench {
        opts: opts.clone(),
        tag,
        node_id,
        sides,
        failures: Vec::new(),
        verified: 0,
        seq: 0,
    };
    if b.active().is_empty() {
        return Err("no side to run".into());
    }
    eprintln!("warm-up ({} per side)...", opts.warmup);
    b.sequential(opts.warmup, false)?;
    eprintln!("sequential ({} per side)...", opts.n);
    b.sequential(opts.n, true)?;
    eprintln!(
        "parallel ({} x {} rounds per side)...",
        opts.parallel, opts.rounds
    );
    b.parallel()?;

    load.record(&mut m);
    let (table, j) = report(&b, &m);
    print_report(&table, &j, opts.json);
    Ok(b.failures.is_empty())
}

fn main() {
    let portmap_mode = std::env::args().nth(1).is_some_and(|a| a == "portmap");
    let outcome = sys::install_cleanup().and_then(|()| {
        if portmap_mode {
            portmap::parse_args().and_then(portmap::run)
        } else {
            parse_args().and_then(run)
        }
    });
    let code = match outcome {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("cni-bench: {e}");
            2
        }
    };
    sys::cleanup();
    std::process::exit(code);
}
