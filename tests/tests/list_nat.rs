//! `corral list-nat` and `corral nat reconcile` against a node with real attachments: every DNAT and SNAT
//! entry with its owner, the filters, drift both ways (an element deleted behind corral's back, one added that
//! no record holds), the stale flag of an owner whose netns is gone, and reconcile after `nft flush ruleset`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod portmap_support;

use corral_tests::conf;
use portmap_support::{Ctr, Env};
use serde_json::{json, Value};

fn corral(env: &Env, args: &[&str]) -> String {
    let bin = env.node.bin.join("corral");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        bin.display()
    );
    let state = format!("CORRAL_STATE_DIR={}", env.node.state.display());
    let mut cmd = vec!["env", state.as_str(), bin.to_str().unwrap()];
    cmd.extend_from_slice(args);
    env.node.ns.run(&cmd)
}

fn list_json(env: &Env, filters: &[&str]) -> Value {
    let mut args = vec!["list-nat", "--json"];
    args.extend_from_slice(filters);
    serde_json::from_str(&corral(env, &args)).unwrap()
}

/// `(hostPort, protocol, containerID, state, stale)` of every DNAT row.
fn dnat_rows(v: &Value) -> Vec<(u64, String, String, String, bool)> {
    v["dnat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["hostPort"].as_u64().unwrap(),
                e["protocol"].as_str().unwrap().to_string(),
                e["owner"]["containerID"].as_str().unwrap_or("-").to_string(),
                e["state"].as_str().unwrap().to_string(),
                !e["stale"].is_null(),
            )
        })
        .collect()
}

#[test]
fn lists_every_mapping_with_its_owner_and_filters() {
    let env = Env::new();
    let (a, b) = (Ctr::new(), Ctr::new());
    env.add(&a, json!([{"hostPort": 8080, "containerPort": 80}, {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]));
    env.add(
        &b,
        json!([{"hostPort": 9090, "containerPort": 80, "hostIP": "192.168.77.1"}]),
    );
    // A masqueraded attachment on a second network of the same node.
    let masq = conf::bridge(
        &env.node,
        "1.0.0",
        &["10.63.0.0/24"],
        json!({"ipMasq": true, "bridge": "lnbr1"}),
    );
    let c = corral_tests::ctr::Ctr::new();
    env.node.add(&c, &masq);

    let all = list_json(&env, &[]);
    let rows = dnat_rows(&all);
    // One v4 and one v6 element per mapping without hostIP (dual-stack containers), one for the hostIP one.
    for (port, proto, owner) in [(8080, "tcp", &a.id), (5353, "udp", &a.id), (9090, "tcp", &b.id)] {
        assert!(
            rows.iter()
                .any(|r| r.0 == port && r.1 == proto && &r.2 == owner && r.3 == "active" && !r.4),
            "{port}/{proto} of {owner} missing from {rows:?}"
        );
    }
    let hostip = all["dnat"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["hostPort"] == 9090)
        .unwrap();
    assert_eq!(hostip["hostIP"], "192.168.77.1");
    assert_eq!(hostip["containerPort"], 80);
    let snat = all["snat"].as_array().unwrap();
    assert!(
        snat.iter().any(|s| s["source"] == "10.63.0.2"
            && s["owner"]["containerID"] == c.id.as_str()
            && s["state"] == "active"),
        "masqueraded address missing: {snat:?}"
    );

    let only_b = dnat_rows(&list_json(&env, &["--container", &b.id]));
    assert!(
        !only_b.is_empty() && only_b.iter().all(|r| r.2 == b.id),
        "{only_b:?}"
    );
    let other_net = list_json(&env, &["--network", "no-such-net"]);
    assert_eq!(other_net["dnat"], json!([]));
    assert_eq!(other_net["snat"], json!([]));

    let table = corral(&env, &["list-nat"]);
    for needle in [
        "HOST PORT",
        "8080",
        "5353",
        "192.168.77.1",
        "10.63.0.2",
        &a.id[..a.id.len().min(12)],
    ] {
        assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
    }
}

#[test]
fn shows_drift_and_stale_owners() {
    let env = Env::new();
    let (a, b) = (Ctr::new(), Ctr::new());
    env.add(&a, json!([{"hostPort": 8081, "containerPort": 80}]));
    env.add(&b, json!([{"hostPort": 8082, "containerPort": 80}]));
    env.node.ns.run(&[
        "nft",
        "delete",
        "element",
        "inet",
        "corral",
        "hostports4",
        "{ tcp . 8081 }",
    ]);
    env.node.ns.run(&[
        "nft",
        "add",
        "element",
        "inet",
        "corral",
        "hostports4",
        "{ tcp . 7777 : 10.77.0.99 . 80 }",
    ]);
    drop(b.ns); // the container vanished without a DEL

    let rows = dnat_rows(&list_json(&env, &[]));
    let find = |port: u64, proto: &str| rows.iter().find(|r| r.0 == port && r.1 == proto).cloned();
    assert_eq!(
        find(8081, "tcp").map(|r| r.3),
        Some("missing".to_string()),
        "{rows:?}"
    );
    let foreign = find(7777, "tcp").unwrap();
    assert_eq!((foreign.2.as_str(), foreign.3.as_str()), ("-", "not-recorded"));
    let stale = find(8082, "tcp").unwrap();
    assert!(stale.4, "owner of 8082 should be stale: {rows:?}");
}

#[test]
fn reconcile_restores_the_table_after_a_flush() {
    let env = Env::new();
    let a = Ctr::new();
    env.add(&a, json!([{"hostPort": 8083, "containerPort": 80}]));
    env.node.ns.run(&["nft", "flush", "ruleset"]);
    let gone = list_json(&env, &[]);
    assert_eq!(gone["tablePresent"], false);
    assert!(dnat_rows(&gone).iter().all(|r| r.3 == "missing"), "{gone}");
    let out = corral(&env, &["nat", "reconcile"]);
    assert!(out.contains("re-applied"), "{out}");
    let back = dnat_rows(&list_json(&env, &[]));
    assert!(back.iter().any(|r| r.0 == 8083 && r.3 == "active"), "{back:?}");
}
