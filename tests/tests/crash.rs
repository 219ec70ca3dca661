//! Crash safety: the bridge plugin (or its host-local delegate) SIGKILLs itself at a failure point
//! (`CORRAL_FAIL_AT`), as an OOM kill or node crash would. The partial state must be what the point implies,
//! DEL must clean all of it, GC must reclaim what a dead container leaked, and the next ADD must work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf::{self, NET};
use corral_tests::{sh, veths, wait_until, Ctr, Node};
use serde_json::{json, Value};

const V4: &str = "10.40.0.0/24";
const GW4: &str = "10.40.0.1";

fn net_conf(node: &Node) -> Value {
    conf::bridge(
        node,
        "1.1.0",
        &[V4],
        json!({ "isGateway": true, "ipMasq": true, "macspoofchk": true }),
    )
}

/// ADD `ctr` dying at `point`; asserts it was killed, not that it failed.
fn crash_add(node: &Node, ctr: &Ctr, conf: &Value, point: &str) {
    let out = node.call("bridge", "ADD", ctr, conf, &[("CORRAL_FAIL_AT", point)]);
    assert_eq!(
        out.status, -1,
        "{point}: the plugin was not killed: {:?} {}",
        out.json, out.stderr
    );
    assert!(
        out.json.is_null(),
        "{point}: a killed plugin printed {}",
        out.json
    );
}

/// What each point leaves: (IPAM reservations, NAT records, set elements, eth0 has an address).
fn expected_leftovers(point: &str) -> (usize, usize, usize, bool) {
    match point {
        "bridge-before-ipam" => (0, 0, 0, false),
        "bridge-after-ipam" => (1, 0, 0, false),
        "bridge-after-nat" => (1, 1, 4, true),
        _ => unreachable!(),
    }
}

fn crash_then_del_cleans_up(point: &str) {
    let node = Node::new();
    let conf = net_conf(&node);
    let crashed = Ctr::new();
    crash_add(&node, &crashed, &conf, point);

    let (ips, records, elements, addressed) = expected_leftovers(point);
    let s = node.snapshot(NET);
    assert_eq!(s.veths.len(), 1, "{point}: {s:#?}");
    assert!(crashed.ns.has_link("eth0"), "{point}: no eth0 in the container");
    assert_eq!(s.reserved.len(), ips, "{point}: {s:#?}");
    assert_eq!(s.nat_records.len(), records, "{point}: {s:#?}");
    assert_eq!(s.elements.len(), elements, "{point}: {s:#?}");
    assert_eq!(
        !crashed.addrs().is_empty(),
        addressed,
        "{point}: eth0 has {:?}",
        crashed.addrs()
    );
    let leaked = s.reserved.clone();

    // The next container is unaffected and gets an address of its own.
    let other = Ctr::new();
    node.add(&other, &conf);
    let other_ip = other.addrs()[0].split('/').next().unwrap().to_string();
    assert!(
        !leaked.contains(&other_ip),
        "{point}: {other_ip} was handed out twice"
    );
    assert!(
        other.ns.ping(GW4),
        "{point}: the next container cannot reach the gateway"
    );

    node.bridge("DEL", &crashed, &conf).ok();
    assert!(!crashed.ns.has_link("eth0"), "{point}: eth0 survived DEL");
    let s = node.snapshot(NET);
    assert_eq!(s.veths.len(), 1, "{point}: {s:#?}");
    assert_eq!(s.reserved, vec![other_ip.clone()], "{point}");
    assert_eq!(
        s.nat_records,
        vec![format!("{}.eth0.bridge.json", other.id)],
        "{point}"
    );
    assert_eq!(node.elements("inet", "masq_src4"), vec![other_ip], "{point}");
    assert!(
        other.ns.ping(GW4),
        "{point}: DEL of the crashed one broke the other"
    );
    node.bridge("DEL", &other, &conf).ok();
    node.assert_empty(NET, point);
}

#[test]
fn crash_before_ipam_leaves_only_the_veth_and_del_removes_it() {
    crash_then_del_cleans_up("bridge-before-ipam");
}

#[test]
fn crash_after_ipam_leaves_a_reservation_and_del_releases_it() {
    crash_then_del_cleans_up("bridge-after-ipam");
}

#[test]
fn crash_after_nat_leaves_nat_elements_and_del_removes_them() {
    crash_then_del_cleans_up("bridge-after-nat");
}

#[test]
fn gc_reclaims_what_a_crashed_and_vanished_container_leaked() {
    for point in ["bridge-after-ipam", "bridge-after-nat"] {
        let node = Node::new();
        let conf = net_conf(&node);
        let crashed = Ctr::new();
        crash_add(&node, &crashed, &conf, point);
        let (ips, records, _, _) = expected_leftovers(point);
        // The container dies without a DEL; its veth pair goes with its netns.
        sh("ip", &["netns", "del", &crashed.ns.name]);
        assert!(
            wait_until(5, || veths(&node.ns).is_empty()),
            "{point}: veth outlived its netns"
        );
        assert_eq!(node.reserved_ips(NET).len(), ips, "{point}");
        assert_eq!(node.nat_records(NET).len(), records, "{point}");

        let alive = Ctr::new();
        node.add(&alive, &conf);
        let alive_ip = alive.addrs()[0].split('/').next().unwrap().to_string();
        node.plugin(
            "bridge",
            "GC",
            &[],
            &conf::gc(&conf, &[(&alive.id, "eth0")]).to_string(),
        )
        .ok();
        let s = node.snapshot(NET);
        assert_eq!(
            s.reserved,
            vec![alive_ip.clone()],
            "{point}: GC kept a leak or took a live IP"
        );
        assert_eq!(s.ipam_index, vec![format!("{}@eth0", alive.id)], "{point}");
        assert_eq!(
            s.nat_records,
            vec![format!("{}.eth0.bridge.json", alive.id)],
            "{point}"
        );
        assert_eq!(
            node.elements("inet", "masq_src4"),
            vec![alive_ip.clone()],
            "{point}"
        );
        assert_eq!(node.elements("bridge", "spoof_ports").len(), 1, "{point}");
        assert!(alive.ns.ping(GW4), "{point}: GC broke a valid attachment");

        let next = Ctr::new();
        node.add(&next, &conf);
        let next_ip = next.addrs()[0].split('/').next().unwrap().to_string();
        assert_ne!(next_ip, alive_ip, "{point}");
        assert!(next.ns.ping(GW4), "{point}");

        // GC with nothing valid removes everything of the network (but not links: GC never sees netns).
        node.plugin("bridge", "GC", &[], &conf::gc(&conf, &[]).to_string())
            .ok();
        let s = node.snapshot(NET);
        assert!(
            s.reserved.is_empty() && s.nat_records.is_empty() && s.elements.is_empty(),
            "{s:#?}"
        );
    }
}

#[test]
fn ipam_crash_during_add_leaves_no_reservation_or_veth() {
    // host-local dies after writing the reservation file: the bridge sees a failed delegate and must undo
    // everything, including the IPAM DEL the spec asks for after a failed delegated ADD. (By default the
    // bridge runs corral's host-local in-process, where such a kill is the bridge's own crash, covered above;
    // CORRAL_DELEGATE_EXEC=1 makes it exec host-local as it execs any other IPAM plugin.)
    for point in ["ipam-after-index", "ipam-after-ipfile"] {
        let node = Node::new();
        let conf = net_conf(&node);
        let ctr = Ctr::new();
        let env = [("CORRAL_FAIL_AT", point), ("CORRAL_DELEGATE_EXEC", "1")];
        let out = node.call("bridge", "ADD", &ctr, &conf, &env);
        assert_ne!(out.status, 0, "{point}: ADD succeeded");
        assert!(
            out.json["code"].is_u64(),
            "{point}: no error object: {} {}",
            out.json,
            out.stderr
        );
        node.assert_empty(NET, point);
        assert!(!ctr.ns.has_link("eth0"), "{point}");
        let next = Ctr::new();
        node.add(&next, &conf);
        assert!(next.ns.ping(GW4), "{point}");
    }
}
