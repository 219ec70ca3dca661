//! Many bridge plugin processes at once on one node: the bridge, the IPAM store and the NAT tables are shared,
//! so every ADD must still get its own address and every DEL must clean up only its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf::{self, NET};
use corral_tests::{veths, Ctr, Node, Outcome};
use serde_json::json;
use std::collections::BTreeSet;

const N: usize = 50;

#[test]
fn fifty_parallel_adds_get_distinct_addresses_and_fifty_parallel_dels_leave_nothing() {
    let node = Node::new();
    let conf = conf::bridge(
        &node,
        "1.1.0",
        &["10.30.0.0/24"],
        json!({ "isGateway": true, "ipMasq": true, "macspoofchk": true }),
    );
    let ctrs: Vec<Ctr> = (0..N).map(|_| Ctr::new()).collect();
    let run_all = |cmd: &str| -> Vec<Outcome> {
        std::thread::scope(|s| {
            let handles: Vec<_> = ctrs
                .iter()
                .map(|c| s.spawn(|| node.bridge(cmd, c, &conf)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };

    let results: Vec<_> = run_all("ADD").into_iter().map(Outcome::ok).collect();
    let mut seen = BTreeSet::new();
    for (ctr, r) in ctrs.iter().zip(&results) {
        let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
        assert_eq!(ctr.addrs(), vec![addr.clone()], "{}: result vs eth0", ctr.id);
        assert!(seen.insert(addr.clone()), "{addr} handed out twice");
    }
    assert_eq!(seen.len(), N);
    let s = node.snapshot(NET);
    assert_eq!(s.veths.len(), N, "veths");
    assert_eq!(s.reserved.len(), N, "reservations");
    assert_eq!(s.nat_records.len(), N, "NAT records");
    assert_eq!(node.elements("inet", "masq_src4").len(), N, "masquerade elements");
    assert_eq!(
        node.elements("bridge", "spoof_allowed").len(),
        N,
        "spoof-check elements"
    );
    let unreachable: Vec<&str> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .map(|c| s.spawn(move || (c.id.as_str(), c.ns.ping("10.30.0.1"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|(_, ok)| !ok)
            .map(|(id, _)| id)
            .collect()
    });
    assert!(
        unreachable.is_empty(),
        "cannot reach the gateway: {unreachable:?}"
    );

    for out in run_all("DEL") {
        out.ok();
    }
    node.assert_empty(NET, "after 50 parallel DELs");
    assert!(veths(&node.ns).is_empty());
    for c in &ctrs {
        assert!(!c.ns.has_link("eth0"), "{}: eth0 left", c.id);
    }
}
