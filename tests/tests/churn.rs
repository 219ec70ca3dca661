//! Churn: many ADD/DEL cycles, four at a time, across two networks on one node (bridge + host-local with
//! masquerade, portmap with one published port on every other cycle, run as a conflist inside the node as a
//! runtime would; see `corral_tests::churn`). While it runs, no address may be on two live containers and
//! every result must match the container's eth0; afterwards the node must hold nothing: no veth, no
//! reservation or index entry, no NAT record, no element in corral's tables, no container namespace.
//!
//! `CORRAL_CHURN_CYCLES` sets the number of cycles (default 1,000; 2,000 is the figure, see below).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::churn::{self, ChurnNet, ChurnSpec};
use corral_tests::{veths, wait_until, Netns, Node};
use std::net::IpAddr;
use std::path::Path;

const WORKERS: usize = 4;
/// The CI default: fits ~90 s with debug binaries on the 2-core VM (13.5 cycles/s for this chain with four
/// workers at load average 7: 600 took 44.5 s). The full 2,000: `CORRAL_CHURN_CYCLES=2000` (bench/README.md, "Churn").
const DEFAULT_CYCLES: usize = 1000;

fn cycles() -> usize {
    std::env::var("CORRAL_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES)
}

/// Elements of every set and map of corral's tables in `ns`, as `family set: element` strings.
fn corral_elements(ns: &Netns) -> Vec<String> {
    let ruleset = ns.nft_ruleset();
    let mut out = Vec::new();
    for obj in ruleset["nftables"].as_array().unwrap() {
        for kind in ["set", "map"] {
            let Some(s) = obj.get(kind) else { continue };
            if s["table"] != "corral" {
                continue;
            }
            for e in s["elem"].as_array().cloned().unwrap_or_default() {
                out.push(format!("{} {}: {e}", s["family"], s["name"]));
            }
        }
    }
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn churn_across_two_networks_leaves_no_leak_and_never_shares_an_address() {
    let node = Node::new();
    let spec = ChurnSpec {
        workers: WORKERS,
        cycles: cycles(),
        networks: vec![
            ChurnNet {
                name: "churn-a".into(),
                bridge: "chbr0".into(),
                subnet: "10.61.0.0/24".into(),
            },
            ChurnNet {
                name: "churn-b".into(),
                bridge: "chbr1".into(),
                subnet: "10.62.0.0/24".into(),
            },
        ],
        masq: true,
        portmap: true,
        cni_path: node.bin.clone(),
        cni_version: "1.1.0".into(),
        max_failures: 10,
    };
    let r = churn::run(&node, &spec);
    eprintln!(
        "churn: {} ADD/DEL cycles ({} with a published port), {WORKERS} workers, 2 networks, in {:.1} s: \
         {:.1} cycles/s; mean per cycle and worker (ms): netns {:.1}, ADD {:.1}, checks {:.1}, DEL {:.1}",
        r.done,
        r.published,
        r.wall.as_secs_f64(),
        r.rate(),
        r.mean_ms(0),
        r.mean_ms(1),
        r.mean_ms(2),
        r.mean_ms(3)
    );
    assert!(
        r.failures.is_empty(),
        "{} failures: {:#?}",
        r.failures.len(),
        r.failures
    );
    assert_eq!(r.done, spec.cycles);
    assert_eq!(r.live_left, 0);

    // DEL unregisters the container's veth in the background: its node end goes a little later.
    assert!(
        wait_until(15, || veths(&node.ns).is_empty()),
        "veths left in the node: {:?}",
        veths(&node.ns)
    );
    for n in &spec.networks {
        let dir = node.state.join("ipam").join(&n.name);
        let names = names_in(&dir);
        let reserved: Vec<&String> = names.iter().filter(|n| n.parse::<IpAddr>().is_ok()).collect();
        assert!(reserved.is_empty(), "{}: reservations left: {reserved:?}", n.name);
        let tmp: Vec<&String> = names.iter().filter(|n| n.ends_with(".tmp")).collect();
        assert!(tmp.is_empty(), "{}: temporary files left: {tmp:?}", n.name);
        let index = names_in(&dir.join(".corral"));
        assert!(index.is_empty(), "{}: index entries left: {index:?}", n.name);
        let records: Vec<String> = names_in(&node.state.join("nat").join(&n.name))
            .into_iter()
            .filter(|n| n.ends_with(".json"))
            .collect();
        assert!(records.is_empty(), "{}: NAT records left: {records:?}", n.name);
        let ports = node.ns.ip_json(&["link", "show", "master", &n.bridge]);
        assert_eq!(
            ports.as_array().map_or(0, Vec::len),
            0,
            "{} ports: {ports}",
            n.bridge
        );
    }
    let elements = corral_elements(&node.ns);
    assert!(elements.is_empty(), "elements left: {elements:#?}");
    let existing = names_in(Path::new("/run/netns"));
    assert_eq!(r.namespaces.len(), r.done);
    let left: Vec<&String> = r.namespaces.iter().filter(|n| existing.contains(n)).collect();
    assert!(left.is_empty(), "container namespaces left: {left:?}");
}
