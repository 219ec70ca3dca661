//! The firewall plugin in a node namespace whose own `table inet hostfilter` (forward hook, policy drop) must
//! come out untouched: container addresses added to and removed from corral's `fw_allow4` with the
//! attachment, CHECK catching a deleted element, DEL twice, GC, the refused keys; and the podman scenario, a
//! conflist as `podman network create` writes it (bridge with `capabilities.ips`, host-local, portmap,
//! firewall `{"backend": ""}`, tuning `{}`, cniVersion 0.4.0) with CNI_PATH holding corral's binaries only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod portmap_support;

use corral_cni::runtime::{Attachment, Conflist};
use corral_tests::{conf, Node};
use portmap_support::{assert_exchange, ctr_ip, enter_node, Ctr, Env, NODE4};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const HOSTFILTER: &str = "table inet hostfilter {
  set allowed { type ipv4_addr; elements = { 192.0.2.1 } }
  chain forward { type filter hook forward priority 10; policy drop; ip daddr @allowed accept; }
}
";

/// Installs the node's own filter table and returns its listing.
fn install_hostfilter(node: &Node) -> String {
    let file = node.state.join("hostfilter.nft");
    std::fs::write(&file, HOSTFILTER).unwrap();
    node.ns.run(&["nft", "-f", &file.display().to_string()]);
    hostfilter(node)
}

fn hostfilter(node: &Node) -> String {
    node.ns.run(&["nft", "list", "table", "inet", "hostfilter"])
}

/// The addresses in corral's fw_allow4 and fw_allow6.
fn allowed(node: &Node) -> BTreeSet<String> {
    let out = node.ns.exec(&["nft", "-j", "list", "table", "inet", "corral"]);
    if !out.status.success() {
        return BTreeSet::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ips = BTreeSet::new();
    for item in v["nftables"].as_array().unwrap() {
        let name = item["set"]["name"].as_str().unwrap_or_default();
        if name == "fw_allow4" || name == "fw_allow6" {
            for e in item["set"]["elem"].as_array().into_iter().flatten() {
                ips.insert(e.as_str().unwrap().to_string());
            }
        }
    }
    ips
}

fn records(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(node.state.join("firewall"))
        .into_iter()
        .flatten()
    {
        let net = net.unwrap().path();
        if net.is_dir() {
            for f in std::fs::read_dir(&net).unwrap() {
                out.push(f.unwrap().path().display().to_string());
            }
        }
    }
    out
}

fn list_with_firewall(node: &Node, firewall: Value) -> Conflist {
    let list = json!({"cniVersion": "1.0.0", "name": "fwnet", "plugins": [
        {"type": "bridge", "bridge": "fwbr0", "isGateway": true,
         "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                  "ranges": [[{"subnet": "10.79.0.0/24"}], [{"subnet": "fd00:79::/64"}]]}},
        firewall]});
    Conflist::parse(list.to_string().as_bytes()).unwrap()
}

fn attachment(ctr: &Ctr) -> Attachment {
    Attachment {
        container_id: ctr.id.clone(),
        netns: ctr.ns.path(),
        ifname: "eth0".into(),
        ..Default::default()
    }
}

fn firewall(node: &Node, cmd: &str, ctr: &Ctr, extra: Value) -> corral_tests::Outcome {
    let c = conf::merge(
        json!({"cniVersion": "1.0.0", "name": "fwnet", "type": "firewall"}),
        extra,
    );
    node.attach("firewall", cmd, &ctr.id, &ctr.ns.path(), &c.to_string())
}

#[test]
fn addresses_follow_the_attachment_and_the_node_filter_is_untouched() {
    let env = Env::new();
    let node = &env.node;
    let before = install_hostfilter(node);
    let list = list_with_firewall(node, json!({"type": "firewall", "backend": ""}));
    let (a, b) = (Ctr::new(), Ctr::new());
    let ra = enter_node(node, || list.add(&env.rt, &attachment(&a))).unwrap();
    let rb = enter_node(node, || list.add(&env.rt, &attachment(&b))).unwrap();
    let (a4, a6, b4) = (ctr_ip(&ra, false), ctr_ip(&ra, true), ctr_ip(&rb, false));
    let want: BTreeSet<String> = [&a4, &a6, &b4, &ctr_ip(&rb, true)].into_iter().cloned().collect();
    assert_eq!(allowed(node), want);
    assert_eq!(records(node).len(), 2, "{:?}", records(node));

    enter_node(node, || list.check(&env.rt, &attachment(&a), &ra)).unwrap();
    node.ns.run(&[
        "nft",
        "delete",
        "element",
        "inet",
        "corral",
        "fw_allow4",
        &format!("{{ {a4} }}"),
    ]);
    let err = enter_node(node, || list.check(&env.rt, &attachment(&a), &ra)).unwrap_err();
    assert_eq!(err.code, 101, "{err}");
    assert!(err.msg.contains(&a4), "{err}");

    // DEL with the element already gone, then DEL twice; b stays.
    enter_node(node, || list.del(&env.rt, &attachment(&a), Some(&ra))).unwrap();
    enter_node(node, || list.del(&env.rt, &attachment(&a), Some(&ra))).unwrap();
    assert!(
        !allowed(node).contains(&a6) && allowed(node).contains(&b4),
        "{:?}",
        allowed(node)
    );
    firewall(node, "DEL", &a, json!({})).ok();

    // GC with no valid attachment removes b's addresses and record.
    let gc = conf::gc(&json!({"name": "fwnet", "type": "firewall"}), &[]);
    node.plugin("firewall", "GC", &[], &gc.to_string()).ok();
    assert_eq!(allowed(node), BTreeSet::new());
    assert_eq!(records(node), Vec::<String>::new());
    firewall(node, "STATUS", &a, json!({"cniVersion": "1.1.0"})).ok();
    enter_node(node, || list.del(&env.rt, &attachment(&b), Some(&rb))).unwrap();
    assert_eq!(hostfilter(node), before, "the node's own table changed");
}

#[test]
fn unsupported_keys_are_code_2_and_a_missing_prev_result_code_7() {
    let env = Env::new();
    let ctr = Ctr::new();
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.79.0.9/24"}]});
    firewall(
        &env.node,
        "ADD",
        &ctr,
        json!({"backend": "firewalld", "prevResult": prev}),
    )
    .err(2, "backend");
    firewall(
        &env.node,
        "ADD",
        &ctr,
        json!({"ingressPolicy": "same-bridge", "prevResult": prev}),
    )
    .err(2, "ingressPolicy");
    firewall(&env.node, "ADD", &ctr, json!({})).err(7, "chained");
    assert_eq!(allowed(&env.node), BTreeSet::new());
    // Accepted, unused.
    let out = firewall(
        &env.node,
        "ADD",
        &ctr,
        json!({"backend": "iptables", "iptablesAdminChainName": "CNI-ADMIN", "prevResult": prev}),
    )
    .ok();
    assert_eq!(out["ips"][0]["address"], "10.79.0.9/24");
    assert_eq!(
        allowed(&env.node),
        ["10.79.0.9".to_string()].into_iter().collect()
    );
    firewall(&env.node, "DEL", &ctr, json!({})).ok();
    assert_eq!(allowed(&env.node), BTreeSet::new());
}

/// What `podman network create` (4.3, CNI backend) writes, with the IPAM dataDir moved into the node.
fn podman_list(node: &Node, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "podfw",
        "plugins": [
            {"type": "bridge", "bridge": "cni-podman7", "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": "10.89.7.0/24", "gateway": "10.89.7.1"}]]},
             "capabilities": {"ips": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall", "backend": ""},
            {"type": "tuning"}
        ]
    })
}

#[test]
fn podman_generated_conflist_works_with_corral_alone() {
    let mut env = Env::new();
    let listing = podman_list(&env.node, "0.4.0");
    env.list = Conflist::parse(listing.to_string().as_bytes()).unwrap();
    // CNI_PATH is the build output: corral's binaries and nothing else.
    assert!(env
        .rt
        .cni_path
        .iter()
        .all(|d| d.join("firewall").exists() && d.join("tuning").exists()));
    let ctr = Ctr::new();
    let maps = json!([{"hostPort": 8089, "containerPort": 80, "protocol": "tcp"}]);
    let result = env.add(&ctr, maps.clone());
    assert_eq!(result["cniVersion"], "0.4.0", "{result}");
    let ip = ctr_ip(&result, false);
    assert!(allowed(&env.node).contains(&ip));
    assert_exchange(&ctr.ns, &env.client, "tcp", NODE4, 8089, 80);
    assert!(ctr.ns.ping("10.89.7.1"), "container cannot reach its gateway");
    let att = env.attachment(&ctr, maps.clone());
    enter_node(&env.node, || env.list.check(&env.rt, &att, &result)).unwrap();

    env.del(&ctr, maps, Some(&result));
    assert_eq!(allowed(&env.node), BTreeSet::new());
    assert_eq!(records(&env.node), Vec::<String>::new());
    let gc_list = Conflist::parse(podman_list(&env.node, "1.1.0").to_string().as_bytes()).unwrap();
    enter_node(&env.node, || gc_list.gc(&env.rt, &[])).unwrap();
    assert_eq!(allowed(&env.node), BTreeSet::new());
    assert!(
        env.node.reserved_ips("podfw").is_empty(),
        "{:?}",
        env.node.reserved_ips("podfw")
    );
    assert!(corral_tests::veths(&env.node.ns).is_empty());
}
