//! Bad input to the bridge plugin: each case asserts the error code, the message, and that nothing was left
//! behind (no veth in the node, no interface in the container, no IPAM file, no NAT record or element).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf::{self, NET};
use corral_tests::{Ctr, Node, Outcome};
use serde_json::{json, Value};

const V4: &str = "10.20.0.0/24";

fn good(node: &Node) -> Value {
    conf::bridge(
        node,
        "1.1.0",
        &[V4],
        json!({ "isGateway": true, "ipMasq": true, "macspoofchk": true }),
    )
}

/// Asserts `out` is error `code` mentioning every needle, and that neither the node nor `ctr` kept anything.
fn refused(node: &Node, ctr: &Ctr, out: Outcome, code: u64, needles: &[&str]) {
    let msg = out.err(code, needles[0]);
    for n in &needles[1..] {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
    node.assert_empty(NET, &format!("after error {code} ({msg})"));
    assert!(
        !ctr.ns.has_link("eth0"),
        "eth0 left in the container after error {code}"
    );
}

#[test]
fn malformed_json_is_code_6() {
    let node = Node::new();
    let ctr = Ctr::new();
    let path = ctr.path();
    let env = [
        ("CNI_CONTAINERID", ctr.id.as_str()),
        ("CNI_NETNS", &path),
        ("CNI_IFNAME", "eth0"),
    ];
    let out = node.plugin(
        "bridge",
        "ADD",
        &env,
        r#"{"cniVersion":"1.1.0","name":"net1","type":"bridge","#,
    );
    refused(&node, &ctr, out, 6, &[""]);
    let out = node.plugin(
        "bridge",
        "ADD",
        &env,
        r#"{"cniVersion":"1.1.0","name":"net1","mtu":"big"}"#,
    );
    // The value is named; the key is not (serde gives no path): reported to cni/.
    refused(&node, &ctr, out, 6, &["\"big\""]);
}

#[test]
fn missing_env_vars_are_code_4_naming_them() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = good(&node).to_string();
    let path = ctr.path();
    let out = node.plugin("bridge", "ADD", &[("CNI_NETNS", &path)], &conf);
    refused(&node, &ctr, out, 4, &["CNI_CONTAINERID", "CNI_IFNAME"]);
    let out = node.plugin(
        "bridge",
        "ADD",
        &[("CNI_CONTAINERID", &ctr.id), ("CNI_IFNAME", "eth0")],
        &conf,
    );
    refused(&node, &ctr, out, 4, &["CNI_NETNS"]);
    let out = node.plugin("bridge", "DEL", &[("CNI_CONTAINERID", &ctr.id)], &conf);
    refused(&node, &ctr, out, 4, &["CNI_IFNAME"]);
}

#[test]
fn unknown_cni_version_is_code_1() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = conf::merge(good(&node), json!({ "cniVersion": "9.9.9" }));
    let out = node.bridge("ADD", &ctr, &conf);
    refused(&node, &ctr, out, 1, &["incompatible", "9.9.9", "1.1.0"]);
}

#[test]
fn vlan_9999_is_code_7() {
    let node = Node::new();
    let ctr = Ctr::new();
    let out = node.bridge("ADD", &ctr, &conf::merge(good(&node), json!({ "vlan": 9999 })));
    refused(&node, &ctr, out, 7, &["9999", "VLAN"]);
}

#[test]
fn subnet_with_host_bits_is_code_7_and_the_veth_is_rolled_back() {
    // host-local refuses it after the bridge plugin created the veth: the rollback must remove it.
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = conf::bridge(&node, "1.1.0", &["10.20.0.5/24"], json!({ "ipMasq": true }));
    let out = node.bridge("ADD", &ctr, &conf);
    refused(&node, &ctr, out, 7, &["10.20.0.5/24", "host bits"]);
}

#[test]
fn hairpin_mode_with_promisc_mode_is_code_7() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = conf::merge(good(&node), json!({ "hairpinMode": true, "promiscMode": true }));
    let out = node.bridge("ADD", &ctr, &conf);
    refused(&node, &ctr, out, 7, &["hairpinMode", "promiscMode"]);
}

#[test]
fn disable_container_interface_with_ipam_is_code_7() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = conf::merge(good(&node), json!({ "disableContainerInterface": true }));
    let out = node.bridge("ADD", &ctr, &conf);
    refused(&node, &ctr, out, 7, &["IPAM", "disableContainerInterface"]);
}

#[test]
fn exhausted_range_is_code_100_naming_network_and_range() {
    let node = Node::new();
    let conf = conf::bridge(
        &node,
        "1.1.0",
        &["10.20.0.0/30"],
        json!({ "isGateway": true, "ipMasq": true }),
    );
    let first = Ctr::new();
    node.add(&first, &conf);
    assert_eq!(first.addrs(), vec!["10.20.0.2/30".to_string()]);
    let before = node.snapshot(NET);
    let second = Ctr::new();
    let msg = node.bridge("ADD", &second, &conf).err(100, "10.20.0.0/30");
    assert!(msg.contains(NET), "{msg}");
    assert_eq!(node.snapshot(NET), before, "the failed ADD changed the node");
    assert!(!second.ns.has_link("eth0"));
    assert!(
        first.ns.ping("10.20.0.1"),
        "the first container lost connectivity"
    );
}

#[test]
fn adding_the_same_container_twice_is_code_4_and_keeps_the_first_attachment() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = good(&node);
    let r = node.add(&ctr, &conf);
    let before = node.snapshot(NET);
    let msg = node.bridge("ADD", &ctr, &conf).err(4, "CNI_IFNAME");
    assert!(msg.contains("already exists"), "{msg}");
    assert_eq!(node.snapshot(NET), before, "the second ADD changed the node");
    assert_eq!(
        ctr.addrs(),
        vec!["10.20.0.2/24".to_string()],
        "the first attachment lost its single IP"
    );
    assert_eq!(node.reserved_ips(NET), vec!["10.20.0.2".to_string()]);
    assert!(ctr.ns.ping("10.20.0.1"), "the first attachment lost connectivity");
    node.bridge("CHECK", &ctr, &conf::with_prev(&conf, &r)).ok();
}

#[test]
fn bad_cni_ifname_is_code_4() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = good(&node);
    for bad in ["eth/0", "a-very-long-ifname", "..", "eth 0"] {
        let out = node.call("bridge", "ADD", &ctr, &conf, &[("CNI_IFNAME", bad)]);
        refused(&node, &ctr, out, 4, &["CNI_IFNAME", bad]);
        assert_eq!(container_links(&ctr), 0, "{bad}");
    }
}

#[test]
fn bad_container_id_is_code_4() {
    let node = Node::new();
    let ctr = Ctr::new();
    let out = node.call(
        "bridge",
        "ADD",
        &ctr,
        &good(&node),
        &[("CNI_CONTAINERID", "-bad/id")],
    );
    refused(&node, &ctr, out, 4, &["CNI_CONTAINERID"]);
}

#[test]
fn nonexistent_netns_is_code_4_naming_it() {
    let node = Node::new();
    let ctr = Ctr::new();
    let gone = format!("/run/netns/{}-missing", ctr.ns.name);
    let out = node.call("bridge", "ADD", &ctr, &good(&node), &[("CNI_NETNS", &gone)]);
    refused(&node, &ctr, out, 4, &["CNI_NETNS", &gone]);
    assert!(
        !node.ns.has_link("br0"),
        "a bridge was created for an ADD that could not start"
    );
}

#[test]
fn add_into_the_plugins_own_netns_is_code_8() {
    let node = Node::new();
    let ctr = Ctr::new();
    let own = node.ns.path();
    let out = node.call("bridge", "ADD", &ctr, &good(&node), &[("CNI_NETNS", &own)]);
    refused(&node, &ctr, out, 8, &["own network namespace"]);
}

/// Links in the container other than lo.
fn container_links(ctr: &Ctr) -> usize {
    ctr.ns
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .count()
}
