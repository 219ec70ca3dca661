//! Root tests for bridges in a throwaway netns: ensure_bridge refusing non-bridges, bridge-port flags
//! (hairpin, isolated) read back both through netops and `ip -d -j link show`, and VLAN requests failing
//! cleanly on kernels without VLAN filtering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestNetns;
use corral_netops::{random_veth_name, LinkInfo, Netlink, NetopsError, VethPlan};

/// A bridge "cbr0" in `node` with one veth port whose peer sits in `ctr`.
fn bridge_with_port(nl: &Netlink, ctr: &TestNetns) -> (LinkInfo, LinkInfo) {
    let br = nl.ensure_bridge("cbr0", None, false).unwrap();
    let port = nl
        .create_veth_in_netns(&VethPlan {
            host_name: random_veth_name().unwrap(),
            peer_name: "eth0".into(),
            peer_netns: &ctr.file,
            mtu: None,
            peer_mac: None,
            master: Some(br.index),
        })
        .unwrap();
    (br, port)
}

#[test]
fn existing_non_bridge_is_refused_with_code_7() {
    let node = TestNetns::new("nobr");
    // No dummy driver on every kernel (this VM has none); a veth pair is always there.
    node.ip(&["link", "add", "cbr0", "type", "veth", "peer", "name", "cbr0p"]);
    let nl = Netlink::in_netns(&node.file).unwrap();
    let err = nl.ensure_bridge("cbr0", None, false).unwrap_err();
    assert!(
        matches!(&err, NetopsError::NotABridge { kind, .. } if kind == "veth"),
        "{err}"
    );
    assert_eq!(err.code(), 7);
}

#[test]
fn bridge_created_by_someone_else_is_adopted_and_brought_up() {
    let node = TestNetns::new("adopt");
    node.ip(&["link", "add", "cbr0", "type", "bridge"]);
    let nl = Netlink::in_netns(&node.file).unwrap();
    let br = nl.ensure_bridge("cbr0", None, false).unwrap();
    assert!(br.up && br.is_bridge(), "{br:?}");
    assert!(!br.promisc);
}

#[test]
fn hairpin_and_isolated_flags_are_set_and_read_back() {
    let node = TestNetns::new("port");
    let ctr = TestNetns::new("portc");
    let nl = Netlink::in_netns(&node.file).unwrap();
    let (_br, port) = bridge_with_port(&nl, &ctr);
    assert_eq!(
        port.hairpin,
        Some(false),
        "a bridge port reports its flags: {port:?}"
    );
    assert_eq!(port.isolated, Some(false));

    nl.set_hairpin(port.index, true).unwrap();
    nl.set_port_isolated(port.index, true).unwrap();
    let info = nl.link_by_index(port.index).unwrap().unwrap();
    assert_eq!((info.hairpin, info.isolated), (Some(true), Some(true)));
    let json = node.link_json(&port.name);
    let slave = &json["linkinfo"]["info_slave_data"];
    assert_eq!(slave["hairpin"], true, "{json}");
    assert_eq!(slave["isolated"], true, "{json}");

    nl.set_hairpin(port.index, false).unwrap();
    nl.set_port_isolated(port.index, false).unwrap();
    let json = node.link_json(&port.name);
    let slave = &json["linkinfo"]["info_slave_data"];
    assert_eq!(
        (slave["hairpin"].clone(), slave["isolated"].clone()),
        (false.into(), false.into())
    );
}

#[test]
fn non_port_has_no_port_flags_and_cannot_take_them() {
    let node = TestNetns::new("noport");
    node.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    let nl = Netlink::in_netns(&node.file).unwrap();
    let d0 = nl.link_by_name("d0").unwrap().unwrap();
    assert_eq!((d0.hairpin, d0.isolated), (None, None));
    let err = nl.set_hairpin(d0.index, true).unwrap_err();
    assert!(err.errno().is_some(), "kernel refusal carries an errno: {err}");
}

#[test]
fn vlan_requests_succeed_or_fail_cleanly() {
    let node = TestNetns::new("vlan");
    let ctr = TestNetns::new("vlanc");
    let nl = Netlink::in_netns(&node.file).unwrap();
    let (br, port) = bridge_with_port(&nl, &ctr);
    match nl.set_bridge_vlan_filtering(br.index, true) {
        Ok(()) => {
            let json = node.link_json("cbr0");
            assert_eq!(json["linkinfo"]["info_data"]["vlan_filtering"], 1, "{json}");
            nl.add_port_vlan(port.index, 100, true, true).unwrap();
            nl.add_bridge_vlan(br.index, 100, false, false).unwrap();
            let vlans = common::run(
                "bridge",
                &["-n", &node.name, "-j", "vlan", "show", "dev", &port.name],
            );
            assert!(vlans.contains("100"), "{vlans}");
        }
        Err(err) => {
            // Kernels without CONFIG_BRIDGE_VLAN_FILTERING (this VM) refuse; the error must be a clean one.
            eprintln!("vlan_filtering unsupported here: {err}");
            assert!(err.errno().is_some(), "{err:?}");
            let err = nl.add_port_vlan(port.index, 100, true, true).unwrap_err();
            eprintln!("add_port_vlan: {err}");
            assert!(err.errno().is_some(), "{err:?}");
        }
    }
    let err = nl.add_port_vlan(port.index, 4095, false, false).unwrap_err();
    assert_eq!(err.code(), 7);
}

#[test]
fn racing_ensure_bridge_calls_agree_on_one_bridge() {
    let node = TestNetns::new("race");
    let indexes: Vec<u32> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let nl = Netlink::in_netns(&node.file).unwrap();
                    nl.ensure_bridge("cbr0", Some(1500), false).unwrap().index
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(indexes.windows(2).all(|w| w[0] == w[1]), "{indexes:?}");
}
