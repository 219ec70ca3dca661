//! The churn engine shared by `tests/tests/churn.rs` (leak and duplicate checks) and
//! `tests/examples/churn_bench.rs` (throughput against the reference plugins): workers that each loop over
//! create a container namespace, ADD a bridge + host-local (+ portmap) conflist as a runtime does, check the
//! result against eth0 and against every other live container, DEL, delete the namespace.

use crate::{unique, Netns, Node};
use corral_cni::runtime::{Attachment, Conflist, Runtime};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One network of a churn run.
#[derive(Debug, Clone)]
pub struct ChurnNet {
    /// Network name (IPAM directory, NAT records).
    pub name: String,
    /// Bridge name in the node.
    pub bridge: String,
    /// IPv4 subnet.
    pub subnet: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChurnSpec {
    /// Concurrent workers.
    pub workers: usize,
    /// ADD/DEL cycles in all.
    pub cycles: usize,
    /// Networks; cycle `n` uses network `n % len`.
    pub networks: Vec<ChurnNet>,
    /// `ipMasq` on the bridge.
    pub masq: bool,
    /// portmap in the chain, with one published port on every other cycle.
    pub portmap: bool,
    /// CNI_PATH (corral's build or the reference plugins).
    pub cni_path: PathBuf,
    /// cniVersion of the conflists.
    pub cni_version: String,
    /// Stop after this many failures.
    pub max_failures: usize,
}

/// What happened.
#[derive(Debug, Default)]
pub struct ChurnReport {
    /// Cycles run.
    pub done: usize,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Time summed over workers per phase: namespace setup, ADD, checks, DEL.
    pub phases: [Duration; 4],
    /// Cycles that published a port.
    pub published: usize,
    /// Every failure (ADD or DEL error, duplicate address, result not on eth0).
    pub failures: Vec<String>,
    /// Every container namespace created.
    pub namespaces: Vec<String>,
    /// Addresses still registered as live at the end (must be none).
    pub live_left: usize,
}

impl ChurnReport {
    /// Cycles per second of wall time.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    /// Mean of phase `i` per cycle, in milliseconds (per worker).
    pub fn mean_ms(&self, i: usize) -> f64 {
        self.phases[i].as_secs_f64() * 1000.0 / self.done.max(1) as f64
    }
}

impl ChurnSpec {
    /// The conflist of network `i`.
    pub fn conflist(&self, node: &Node, i: usize) -> Conflist {
        let n = &self.networks[i];
        let mut plugins = vec![json!({
            "type": "bridge", "bridge": n.bridge, "isGateway": true, "ipMasq": self.masq,
            "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                     "ranges": [[{"subnet": n.subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
        })];
        if self.portmap {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        let list = json!({"cniVersion": self.cni_version, "name": n.name, "plugins": plugins});
        Conflist::parse(list.to_string().as_bytes()).unwrap()
    }
}

struct Shared<'a> {
    spec: &'a ChurnSpec,
    node: &'a Node,
    lists: Vec<Conflist>,
    rt: Runtime,
    live: Mutex<HashMap<(usize, IpAddr), String>>,
    failures: Mutex<Vec<String>>,
    namespaces: Mutex<Vec<String>>,
    next: AtomicUsize,
    published: AtomicUsize,
    phases_us: [AtomicU64; 4],
}

impl Shared<'_> {
    fn fail(&self, msg: String) {
        self.failures.lock().unwrap().push(msg);
    }
    fn spent(&self, phase: usize, since: Instant) -> Instant {
        let now = Instant::now();
        self.phases_us[phase].fetch_add((now - since).as_micros() as u64, Ordering::Relaxed);
        now
    }
}

/// Runs the churn in `node` (plugins run inside the node's namespace; state in its private directory).
pub fn run(node: &Node, spec: &ChurnSpec) -> ChurnReport {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
    env.insert("CORRAL_STATE_DIR".to_string(), node.state.display().to_string());
    let sh = Shared {
        spec,
        node,
        lists: (0..spec.networks.len()).map(|i| spec.conflist(node, i)).collect(),
        rt: Runtime {
            cni_path: vec![spec.cni_path.clone()],
            env,
        },
        live: Mutex::new(HashMap::new()),
        failures: Mutex::new(Vec::new()),
        namespaces: Mutex::new(Vec::new()),
        next: AtomicUsize::new(0),
        published: AtomicUsize::new(0),
        phases_us: Default::default(),
    };
    let began = Instant::now();
    std::thread::scope(|s| {
        for w in 0..spec.workers {
            let sh = &sh;
            s.spawn(move || worker(sh, w));
        }
    });
    let wall = began.elapsed();
    let us = |i: usize| Duration::from_micros(sh.phases_us[i].load(Ordering::Relaxed));
    ChurnReport {
        done: sh.next.load(Ordering::Relaxed).min(spec.cycles),
        wall,
        phases: [us(0), us(1), us(2), us(3)],
        published: sh.published.load(Ordering::Relaxed),
        failures: sh.failures.into_inner().unwrap(),
        namespaces: sh.namespaces.into_inner().unwrap(),
        live_left: sh.live.into_inner().unwrap().len(),
    }
}

fn worker(sh: &Shared<'_>, worker: usize) {
    // Plugins started from this thread run in the node's namespace.
    let ns = std::fs::File::open(sh.node.ns.path()).unwrap();
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    loop {
        let n = sh.next.fetch_add(1, Ordering::Relaxed);
        if n >= sh.spec.cycles || sh.failures.lock().unwrap().len() >= sh.spec.max_failures {
            return;
        }
        cycle(sh, worker, n);
    }
}

/// eth0's IPv4 addresses in `ns`.
pub fn eth0_v4(ns: &Netns) -> Vec<IpAddr> {
    let v = ns.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["local"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The first IPv4 address of a result.
pub fn result_v4(result: &Value) -> Option<IpAddr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str()?.split('/').next()?.parse().ok())
        .find(IpAddr::is_ipv4)
}

/// One cycle: a namespace (deleted by its guard on every path), ADD, checks, DEL.
fn cycle(sh: &Shared<'_>, worker: usize, n: usize) {
    let nets = sh.spec.networks.len();
    let net = n % nets;
    let net_name = &sh.spec.networks[net].name;
    let t = Instant::now();
    let ns = Netns::new("chc");
    sh.namespaces.lock().unwrap().push(ns.name.clone());
    let id = unique("ch");
    let mut caps = Map::new();
    // Every other cycle publishes a port; a worker holds one container at a time, so its port is free.
    let round = n / nets;
    if sh.spec.portmap && round & 1 == 0 {
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 20000 + worker, "containerPort": 80, "protocol": "tcp"}]),
        );
        sh.published.fetch_add(1, Ordering::Relaxed);
    }
    let att = Attachment {
        container_id: id.clone(),
        netns: ns.path(),
        ifname: "eth0".into(),
        capability_args: caps,
        ..Default::default()
    };
    let list = &sh.lists[net];
    let t = sh.spent(0, t);
    let added = list.add(&sh.rt, &att);
    let t = sh.spent(1, t);
    let result = match added {
        Ok(r) => r,
        Err(e) => {
            sh.fail(format!("cycle {n}: ADD {id} on {net_name}: {e}"));
            let _ = list.del(&sh.rt, &att, None);
            return;
        }
    };
    // Live from ADD's return until just before DEL (once DEL returns, the address may go to another worker):
    // a second holder registering in that window is a duplicate.
    let ip = result_v4(&result);
    let mut registered = None;
    if let Some(ip) = ip {
        let mut live = sh.live.lock().unwrap();
        match live.insert((net, ip), id.clone()) {
            Some(other) => {
                sh.fail(format!(
                    "cycle {n}: {ip} on {net_name} given to {id} while {other} holds it"
                ));
                live.insert((net, ip), other);
            }
            None => registered = Some(ip),
        }
    }
    let on_eth0 = eth0_v4(&ns);
    if ip.is_none() || on_eth0 != ip.into_iter().collect::<Vec<_>>() {
        sh.fail(format!(
            "cycle {n}: {id}: result address {ip:?}, eth0 has {on_eth0:?}"
        ));
    }
    if let Some(ip) = registered {
        sh.live.lock().unwrap().remove(&(net, ip));
    }
    let t = sh.spent(2, t);
    if let Err(e) = list.del(&sh.rt, &att, Some(&result)) {
        sh.fail(format!("cycle {n}: DEL {id}: {e}"));
    }
    sh.spent(3, t);
}
