//! The loopback plugin against the kernel: `lo` up with its addresses in the result of every cniVersion,
//! prevResult passed through, DEL takes it down (and tolerates a gone netns), CHECK sees it down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf::{self, VERSIONS};
use corral_tests::{sh, Ctr, Netns, Node};
use serde_json::{json, Value};

fn loopback_conf(ver: &str) -> Value {
    json!({ "cniVersion": ver, "name": "lo-net", "type": "loopback" })
}

/// A container whose `lo` is still down, as a runtime creates it.
fn bare_ctr() -> Ctr {
    Ctr {
        ns: Netns::bare("crl"),
        id: corral_tests::unique("id"),
    }
}

#[test]
fn add_sets_lo_up_and_returns_its_addresses_in_every_version() {
    let node = Node::new();
    for ver in VERSIONS {
        let ctr = bare_ctr();
        assert!(!ctr.ns.is_up("lo"), "{ver}: lo starts down");
        assert!(
            ctr.ns.ping_fails("127.0.0.1"),
            "{ver}: 127.0.0.1 answers with lo down"
        );
        let r = node.call("loopback", "ADD", &ctr, &loopback_conf(ver), &[]).ok();
        assert!(ctr.ns.is_up("lo"), "{ver}: lo is still down");
        assert!(ctr.ns.ping("127.0.0.1"), "{ver}: 127.0.0.1 does not answer");
        let kernel = ctr.ns.addrs("lo");
        assert!(kernel.contains(&"127.0.0.1/8".to_string()), "{ver}: {kernel:?}");
        let has_v6 = kernel.contains(&"::1/128".to_string());
        assert_eq!(r["cniVersion"], ver, "{ver}: {r}");
        if !corral_cni::version::at_least(ver, "0.3.0") {
            assert_eq!(r["ip4"]["ip"], "127.0.0.1/8", "{ver}: {r}");
            assert_eq!(r.get("ip6").is_some(), has_v6, "{ver}: {r}");
            if has_v6 {
                assert_eq!(r["ip6"]["ip"], "::1/128", "{ver}: {r}");
            }
            continue;
        }
        assert_eq!(
            r["interfaces"],
            json!([{ "name": "lo", "mac": "00:00:00:00:00:00", "sandbox": ctr.path() }]),
            "{ver}"
        );
        let mut want = vec![json!("127.0.0.1/8")];
        if has_v6 {
            want.push(json!("::1/128"));
        }
        let ips = r["ips"].as_array().unwrap();
        let got: Vec<Value> = ips.iter().map(|i| i["address"].clone()).collect();
        assert_eq!(got, want, "{ver}: {r}");
        for ip in ips {
            assert_eq!(ip["interface"], 0, "{ver}: {ip}");
            assert_eq!(
                ip.get("version").is_some(),
                !corral_cni::version::at_least(ver, "1.0.0"),
                "{ver}"
            );
        }
    }
}

#[test]
fn add_ignores_cni_ifname_and_always_configures_lo() {
    let node = Node::new();
    let ctr = bare_ctr();
    node.call(
        "loopback",
        "ADD",
        &ctr,
        &loopback_conf("1.0.0"),
        &[("CNI_IFNAME", "eth7")],
    )
    .ok();
    assert!(ctr.ns.is_up("lo"));
    assert!(!ctr.ns.has_link("eth7"));
}

#[test]
fn add_passes_a_prev_result_through_unchanged() {
    let node = Node::new();
    for ver in VERSIONS
        .into_iter()
        .filter(|v| corral_cni::version::at_least(v, "0.3.0"))
    {
        let ctr = bare_ctr();
        let mut prev = json!({
            "cniVersion": ver,
            "interfaces": [{ "name": "eth0", "mac": "02:00:00:00:00:05", "sandbox": ctr.path() }],
            "ips": [{ "address": "10.10.0.5/24", "gateway": "10.10.0.1", "interface": 0 }],
            "routes": [{ "dst": "0.0.0.0/0", "gw": "10.10.0.1" }],
            "dns": { "nameservers": ["10.10.0.1"] },
        });
        if !corral_cni::version::at_least(ver, "1.0.0") {
            prev["ips"][0]["version"] = json!("4");
        }
        let conf = conf::with_prev(&loopback_conf(ver), &prev);
        let r = node.call("loopback", "ADD", &ctr, &conf, &[]).ok();
        assert_eq!(r, prev, "{ver}: prevResult not passed through");
        assert!(ctr.ns.is_up("lo"), "{ver}: lo still down");
    }
}

#[test]
fn del_sets_lo_down() {
    let node = Node::new();
    let ctr = bare_ctr();
    let conf = loopback_conf("1.0.0");
    node.call("loopback", "ADD", &ctr, &conf, &[]).ok();
    node.call("loopback", "DEL", &ctr, &conf, &[]).ok();
    assert!(!ctr.ns.is_up("lo"), "lo is still up after DEL");
    assert!(ctr.ns.ping_fails("127.0.0.1"));
    node.call("loopback", "DEL", &ctr, &conf, &[]).ok();
}

#[test]
fn del_succeeds_when_netns_is_gone() {
    let node = Node::new();
    let ctr = bare_ctr();
    let conf = loopback_conf("1.0.0");
    node.call("loopback", "ADD", &ctr, &conf, &[]).ok();
    sh("ip", &["netns", "del", &ctr.ns.name]);
    node.call("loopback", "DEL", &ctr, &conf, &[]).ok();
    node.call("loopback", "DEL", &ctr, &conf, &[("CNI_NETNS", "")])
        .ok();
    assert!(node.ns.is_up("lo"), "the node's own lo must never be touched");
}

#[test]
fn check_passes_when_lo_is_up_and_fails_when_it_is_down() {
    let node = Node::new();
    for ver in conf::check_versions() {
        let ctr = bare_ctr();
        let conf = loopback_conf(ver);
        let r = node.call("loopback", "ADD", &ctr, &conf, &[]).ok();
        let check = conf::with_prev(&conf, &r);
        node.call("loopback", "CHECK", &ctr, &check, &[]).ok();
        ctr.ns.ip(&["link", "set", "lo", "down"]);
        node.call("loopback", "CHECK", &ctr, &check, &[])
            .err(101, "loopback");
    }
}

#[test]
fn del_in_the_plugins_own_netns_leaves_the_nodes_lo_up() {
    // A reused /proc/<pid>/ns/net can name the host (reference plugins#714): DEL must not take its lo down.
    let node = Node::new();
    let ctr = Ctr::new();
    let own = node.ns.path();
    node.call(
        "loopback",
        "DEL",
        &ctr,
        &loopback_conf("1.0.0"),
        &[("CNI_NETNS", &own)],
    )
    .ok();
    assert!(node.ns.is_up("lo"), "DEL took the node's lo down");
    let out = node.call(
        "loopback",
        "ADD",
        &ctr,
        &loopback_conf("1.0.0"),
        &[("CNI_NETNS", &own)],
    );
    out.err(8, "own network namespace");
}
