//! Churn throughput, corral against the reference plugins in the same run: the churn of `tests/tests/churn.rs`
//! (container namespace, ADD of a bridge + host-local (+ portmap) conflist, checks, DEL, namespace deleted;
//! W workers; two networks) run for each plugin directory in turn, in a fresh node namespace each, with the
//! same conflists. Prints cycles/s and ADD+DEL ops/s per side and the ratio. Run it through `bench/churn.sh`.
//!
//! Build profile: run this example in the dev profile (the release profile aborts on panic, which would skip
//! the namespace guards); the plugins it measures are whatever `--corral` and `--reference` point at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::churn::{self, ChurnNet, ChurnReport, ChurnSpec};
use corral_tests::{veths, wait_until, Node};
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage: churn_bench [options]   (as root)
  -n, --cycles N       ADD/DEL cycles per side and round (default 400)
  -w, --workers W      concurrent workers (default 4)
  -r, --rounds R       rounds; sides alternate which goes first (default 1)
  --corral DIR         corral's plugins (default target/release)
  --reference DIR      the reference plugins (default /usr/lib/cni)
  --chain C            full: bridge with ipMasq + host-local + portmap (needs iptables for the reference);
                       plain: bridge + host-local; both (default: both if iptables exists, else plain)";

struct Opts {
    cycles: usize,
    workers: usize,
    rounds: usize,
    corral: PathBuf,
    reference: PathBuf,
    chains: Vec<bool>,
}

fn parse() -> Result<Opts, String> {
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let has_iptables = ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    let mut o = Opts {
        cycles: 400,
        workers: 4,
        rounds: 1,
        corral: ws.join("target/release"),
        reference: PathBuf::from("/usr/lib/cni"),
        chains: if has_iptables {
            vec![false, true]
        } else {
            vec![false]
        },
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "-n" | "--cycles" => o.cycles = num(val()?)?,
            "-w" | "--workers" => o.workers = num(val()?)?,
            "-r" | "--rounds" => o.rounds = num(val()?)?,
            "--corral" => o.corral = PathBuf::from(val()?),
            "--reference" => o.reference = PathBuf::from(val()?),
            "--chain" => {
                o.chains = match val()?.as_str() {
                    "full" => vec![true],
                    "plain" => vec![false],
                    "both" => vec![false, true],
                    other => return Err(format!("--chain {other}: full, plain or both")),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    for d in [&o.corral, &o.reference] {
        for b in ["bridge", "host-local", "portmap"] {
            if !d.join(b).exists() {
                return Err(format!("{} is missing", d.join(b).display()));
            }
        }
    }
    Ok(o)
}

fn spec(o: &Opts, dir: &Path, full: bool) -> ChurnSpec {
    let net = |i: usize| ChurnNet {
        name: format!("churnb-{i}"),
        bridge: format!("cbbr{i}"),
        subnet: format!("10.7{i}.0.0/24"),
    };
    ChurnSpec {
        workers: o.workers,
        cycles: o.cycles,
        networks: vec![net(1), net(2)],
        masq: full,
        portmap: full,
        cni_path: dir.to_path_buf(),
        // The reference (Debian 1.1.1) speaks up to 1.0.0.
        cni_version: "1.0.0".into(),
        max_failures: 10,
    }
}

/// One side in a fresh node: the report and what it left behind (veths after 10 s, reservations).
fn side(o: &Opts, dir: &Path, full: bool) -> (ChurnReport, usize, usize) {
    let node = Node::new();
    let s = spec(o, dir, full);
    let r = churn::run(&node, &s);
    wait_until(10, || veths(&node.ns).is_empty());
    let reserved = s.networks.iter().map(|n| node.reserved_ips(&n.name).len()).sum();
    (r, veths(&node.ns).len(), reserved)
}

#[derive(Default)]
struct Totals {
    done: usize,
    wall: f64,
    add_ms: f64,
    del_ms: f64,
    failures: usize,
    leaks: usize,
}

impl Totals {
    fn add(&mut self, r: &ChurnReport, veths: usize, reserved: usize) {
        self.done += r.done;
        self.wall += r.wall.as_secs_f64();
        self.add_ms += r.phases[1].as_secs_f64() * 1000.0;
        self.del_ms += r.phases[3].as_secs_f64() * 1000.0;
        self.failures += r.failures.len();
        self.leaks += veths + reserved;
        for f in r.failures.iter().take(3) {
            eprintln!("  failure: {f}");
        }
    }
    fn rate(&self) -> f64 {
        self.done as f64 / self.wall.max(1e-9)
    }
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    corral_tests::require_root();
    println!(
        "churn: {} cycles per side and round, {} workers, 2 networks (/24), {} round(s); corral {} vs reference {}",
        o.cycles,
        o.workers,
        o.rounds,
        o.corral.display(),
        o.reference.display()
    );
    let mut ok = true;
    for &full in &o.chains {
        let chain = if full {
            "bridge(ipMasq) + host-local + portmap (every other cycle publishes a port)"
        } else {
            "bridge + host-local"
        };
        let (mut c, mut r) = (Totals::default(), Totals::default());
        for round in 0..o.rounds {
            let corral_first = round % 2 == 0;
            for first in [true, false] {
                let is_corral = first == corral_first;
                let (dir, t) = if is_corral {
                    (&o.corral, &mut c)
                } else {
                    (&o.reference, &mut r)
                };
                let (rep, v, res) = side(&o, dir, full);
                t.add(&rep, v, res);
            }
        }
        println!("\nchain: {chain}");
        println!(
            "{:<10} {:>7} {:>8} {:>10} {:>10} {:>12} {:>12} {:>8} {:>6}",
            "side", "cycles", "wall s", "cycles/s", "ops/s", "ADD ms/op", "DEL ms/op", "failed", "leaks"
        );
        for (name, t) in [("corral", &c), ("reference", &r)] {
            println!(
                "{:<10} {:>7} {:>8.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8} {:>6}",
                name,
                t.done,
                t.wall,
                t.rate(),
                2.0 * t.rate(),
                t.add_ms / t.done.max(1) as f64,
                t.del_ms / t.done.max(1) as f64,
                t.failures,
                t.leaks
            );
            ok &= t.failures == 0 && t.leaks == 0;
        }
        println!(
            "ratio corral/reference throughput: {:.2}x  (ADD latency c/r {:.2}, DEL latency c/r {:.2})",
            c.rate() / r.rate().max(1e-9),
            (c.add_ms / c.done.max(1) as f64) / (r.add_ms / r.done.max(1) as f64).max(1e-9),
            (c.del_ms / c.done.max(1) as f64) / (r.del_ms / r.done.max(1) as f64).max(1e-9)
        );
    }
    if !ok {
        std::process::exit(1);
    }
}
