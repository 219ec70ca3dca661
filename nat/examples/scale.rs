//! Scaling measurements of the NAT manager, inside a throwaway network namespace this program creates
//! (`corral-natperf-<pid>`, deleted on every exit path) with its state in a temp dir. Never touches the
//! machine's own ruleset.
//!
//! ```text
//! cargo run --release -p corral-nat --example scale -- [--adds 1000] [--list 10000] [--corral target/release/corral]
//! ```
//!
//! (a) ADD/DEL latency of the 1st … `--adds`th attachment with one port mapping each, through `NatManager::add`;
//! then one more ADD/DEL once `--list` attachments exist. (b) `list_ports` at `--list` mappings, and with
//! `--corral`, `corral list-nat --json` end to end (run inside the namespace).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*).into()) };
}

use corral_nat::{
    AttachmentRecord, ElementReader, NatManager, NftBackend, NftCli, Owner, PortForwarding, PortMapping,
    Protocol, Source, Table,
};

/// The namespace; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Result<Self> {
        let name = format!("corral-natperf-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status()?;
        if !status.success() {
            bail!("ip netns add {name} failed (run as root)");
        }
        Ok(Self { name })
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

struct Args {
    adds: usize,
    list: usize,
    corral: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut out = Args {
        adds: 1000,
        list: 10_000,
        corral: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--adds" => out.adds = value()?.parse()?,
            "--list" => out.list = value()?.parse()?,
            "--corral" => out.corral = Some(value()?.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(out)
}

/// Attachment `i`: `tcp (10000 + i) → 10.x.y.z:80`, hairpin and localhost masquerade, netns = ours (live).
fn record(i: usize, netns: &Path) -> Result<AttachmentRecord> {
    let n = u32::try_from(i)?;
    let ip = std::net::Ipv4Addr::from(0x0a40_0000 + n + 2);
    let mut r =
        AttachmentRecord::with_source(Owner::new("perf", format!("ctr{i:06}"), "eth0"), Source::Portmap);
    r.ports = Some(PortForwarding {
        mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: u16::try_from(10_000 + i)?,
            container_ip: ip.into(),
            container_port: 80,
        }],
        subnets: vec!["10.64.0.0/10".parse()?],
        snat: true,
        masq_all: false,
    });
    r.netns = Some(netns.to_path_buf());
    Ok(r)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() -> Result<()> {
    let args = args()?;
    if args.list < args.adds || args.list > 50_000 {
        bail!("--list must be between --adds and 50000");
    }
    let ns = Netns::new()?;
    let dir = tempfile::tempdir()?;
    let m = NatManager::new(dir.path(), NftCli::in_netns(ns.path()));

    // (a) ADD latency as attachments accumulate.
    let mut adds = Vec::with_capacity(args.adds);
    for i in 0..args.adds {
        let r = record(i, &ns.path())?;
        let t = Instant::now();
        m.add(&r)?;
        adds.push(t.elapsed());
    }
    let window = |from: usize| median(adds[from..(from + 10).min(adds.len())].to_vec());
    println!("ADD #1: {}", ms(adds[0]));
    println!("ADD #2-11 median: {}", ms(window(1)));
    if args.adds >= 100 {
        println!("ADD #91-100 median: {}", ms(window(90)));
    }
    println!(
        "ADD #{}-{} median: {}",
        args.adds - 9,
        args.adds,
        ms(window(args.adds.saturating_sub(10)))
    );
    let mut dels = Vec::new();
    for i in (args.adds - 10)..args.adds {
        let r = record(i, &ns.path())?;
        let t = Instant::now();
        m.del(&r.owner, Source::Portmap)?;
        dels.push(t.elapsed());
        m.add(&r)?;
    }
    println!(
        "DEL at {} attachments, median of 10: {}",
        args.adds,
        ms(median(dels))
    );

    // (b) Fill up to `list` attachments: record files written directly (no fsync: this is set-up, not a
    // measurement), then the kernel state and the index in one reconcile.
    let t = Instant::now();
    {
        let _lock = m.store().lock()?;
        for i in args.adds..args.list {
            let r = record(i, &ns.path())?;
            let path = m.store().record_path(&r.owner, r.source);
            std::fs::write(path, serde_json::to_vec(&r)?)?;
        }
    }
    println!("fill to {} records: {}", args.list, ms(t.elapsed()));
    let t = Instant::now();
    let report = m.reconcile()?;
    println!(
        "reconcile of {} records (one nft transaction + index rebuild): {}",
        report.records,
        ms(t.elapsed())
    );

    let mut lists = Vec::new();
    let mut entries = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let listing = m.list_ports()?;
        lists.push(t.elapsed());
        entries = listing.entries.len();
    }
    println!(
        "list_ports at {entries} mappings, median of 5: {}",
        ms(median(lists))
    );
    let (mut recs, mut kernel, mut json) = (Vec::new(), Vec::new(), Vec::new());
    let json_cli = NftCli {
        reader: ElementReader::NftJson,
        ..NftCli::in_netns(ns.path())
    };
    for _ in 0..5 {
        let t = Instant::now();
        m.records()?;
        recs.push(t.elapsed());
        let t = Instant::now();
        m.backend().list_elements(Table::Inet)?;
        kernel.push(t.elapsed());
        let t = Instant::now();
        json_cli.list_elements(Table::Inet)?;
        json.push(t.elapsed());
    }
    println!("  reading the records: {}", ms(median(recs)));
    println!("  netlink element dump: {}", ms(median(kernel)));
    println!("  (nft -j list table + parse instead: {})", ms(median(json)));

    let extra = record(args.list, &ns.path())?;
    let (mut add_n, mut del_n) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        m.add(&extra)?;
        add_n.push(t.elapsed());
        let t = Instant::now();
        m.del(&extra.owner, Source::Portmap)?;
        del_n.push(t.elapsed());
    }
    println!(
        "ADD at {} attachments, median of 5: {}",
        args.list,
        ms(median(add_n))
    );
    println!(
        "DEL at {} attachments, median of 5: {}",
        args.list,
        ms(median(del_n))
    );

    if let Some(corral) = &args.corral {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let status = Command::new("nsenter")
                .arg(format!("--net={}", ns.path().display()))
                .arg(corral)
                .args(["list-nat", "--json"])
                .env("CORRAL_STATE_DIR", dir.path())
                .stdout(Stdio::null())
                .status()?;
            runs.push(t.elapsed());
            if !status.success() {
                bail!("corral list-nat failed: {status}");
            }
        }
        println!(
            "corral list-nat --json end to end, median of 5: {}",
            ms(median(runs))
        );
    }
    Ok(())
}
