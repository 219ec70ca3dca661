//! portmap's state handling in a node namespace: CHECK, DEL with and without portMappings and after the netns
//! is gone, re-ADD, host port conflicts (code 102) and stale owners, conntrack flushing on DEL, GC, STATUS, and
//! every bad input leaving nothing applied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod portmap_support;

use portmap_support::{assert_exchange, ctr_ip, Ctr, Env, NET, NODE4};
use serde_json::{json, Value};

fn one(port: u16) -> Value {
    json!([{"hostPort": port, "containerPort": 80}, {"hostPort": port, "containerPort": 53, "protocol": "udp"}])
}

#[test]
fn check_passes_then_names_a_deleted_element_with_code_101() {
    let env = Env::new();
    let a = Ctr::new();
    let result = env.add(&a, one(8080));
    let conf = json!({"runtimeConfig": {"portMappings": one(8080)}, "prevResult": result});
    env.portmap("CHECK", &a, conf.clone()).ok();
    let wrong = json!({"runtimeConfig": {"portMappings": one(9090)}, "prevResult": result});
    env.portmap("CHECK", &a, wrong).err(101, "differ");
    env.node.ns.run(&[
        "nft",
        "delete",
        "element",
        "inet",
        "corral",
        "hostports4",
        "{ tcp . 8080 }",
    ]);
    env.portmap("CHECK", &a, conf.clone())
        .err(101, "hostports4 { tcp . 8080 : ");
    env.portmap("CHECK", &a, json!({"prevResult": result}))
        .err(101, "hostports4");
    env.portmap("CHECK", &a, json!({})).err(7, "chained");
}

#[test]
fn check_works_for_an_ipv4_only_container() {
    let env = Env::new();
    let a = Ctr::new();
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": a.ns.path()}],
        "ips": [{"address": "10.77.0.9/24", "interface": 0}]});
    let conf = json!({"runtimeConfig": {"portMappings": one(8080)}, "prevResult": prev});
    env.portmap("ADD", &a, conf.clone()).ok();
    env.portmap("CHECK", &a, conf).ok();
    assert_eq!(env.elements("hostports4").len(), 2);
    assert!(env.elements("hostports6").is_empty());
}

#[test]
fn del_works_without_port_mappings_twice_and_after_the_netns_is_gone() {
    let env = Env::new();
    let a = Ctr::new();
    let result = env.add(&a, one(8080));
    assert_eq!(env.elements("hostports4").len(), 2);
    env.portmap("DEL", &a, json!({})).ok();
    assert!(env.elements("hostports4").is_empty() && env.elements("hostports6").is_empty());
    assert!(env.elements("dnat_masq4").is_empty() && env.records().is_empty());
    env.portmap("DEL", &a, json!({})).ok();
    env.del(&a, one(8080), Some(&result));

    let b = Ctr::new();
    let result = env.add(&b, one(8081));
    let b_id = b.id.clone();
    let gone = Ctr {
        id: b_id.clone(),
        ns: corral_tests::Netns::new("pmg"),
    };
    drop(b);
    env.del(&gone, Value::Null, Some(&result));
    assert!(
        env.elements("hostports4").is_empty(),
        "{:?}",
        env.elements("hostports4")
    );
    assert!(env.records().is_empty(), "{:?}", env.records());
}

#[test]
fn re_add_replaces_without_duplicates() {
    let env = Env::new();
    let a = Ctr::new();
    let result = env.add(&a, one(8080));
    let conf = |m: Value| json!({"runtimeConfig": {"portMappings": m}, "prevResult": result});
    let out = env.portmap("ADD", &a, conf(one(8080))).ok();
    assert_eq!(out["ips"], result["ips"], "ADD passes prevResult through");
    assert_eq!(env.elements("hostports4").len(), 2);
    env.portmap("ADD", &a, conf(one(9090))).ok();
    let ip = ctr_ip(&result, false);
    assert_eq!(
        env.elements("hostports4"),
        [
            format!("tcp . 9090 : {ip} . 80"),
            format!("udp . 9090 : {ip} . 53")
        ]
    );
    assert_eq!(env.records().len(), 1);
    env.portmap("ADD", &a, conf(json!([]))).ok();
    assert!(env.elements("hostports4").is_empty() && env.records().is_empty());
}

#[test]
fn a_port_owned_by_a_live_container_is_code_102_and_nothing_is_applied() {
    let env = Env::new();
    let a = Ctr::new();
    let b = Ctr::new();
    env.add(&a, one(8080));
    let before = env.elements("hostports4");
    let e = env
        .try_add(
            &b,
            json!([{"hostPort": 8099, "containerPort": 1}, {"hostPort": 8080, "containerPort": 80}]),
        )
        .unwrap_err();
    assert_eq!(e.code, 102, "{e}");
    assert!(
        e.msg.contains(&format!("{NET}/{}/eth0", a.id)) && e.msg.contains("tcp 8080"),
        "{e}"
    );
    assert_eq!(env.elements("hostports4"), before);
    assert_eq!(env.records().len(), 1);
    // A specific host IP conflicts with a wildcard on the same port too.
    let e = env
        .try_add(
            &b,
            json!([{"hostPort": 8080, "containerPort": 80, "hostIP": NODE4}]),
        )
        .unwrap_err();
    assert_eq!(e.code, 102, "{e}");
    env.add(
        &b,
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}]),
    );
}

#[test]
fn a_stale_owner_is_replaced_in_one_transaction() {
    let env = Env::new();
    let a = Ctr::new();
    env.add(&a, one(8080));
    drop(a); // netns deleted without DEL
    let b = Ctr::new();
    let result = env.add(&b, one(8080));
    let ip = ctr_ip(&result, false);
    assert_eq!(
        env.elements("hostports4"),
        [
            format!("tcp . 8080 : {ip} . 80"),
            format!("udp . 8080 : {ip} . 53")
        ]
    );
    assert_eq!(env.records(), [format!("{}.eth0.portmap.json", b.id)]);
    assert_exchange(&b.ns, &env.client, "tcp", NODE4, 8080, 80);
}

#[test]
fn del_flushes_the_udp_conntrack_flows_of_its_ports() {
    let env = Env::new();
    let a = Ctr::new();
    let result = env.add(&a, one(8053));
    assert_exchange(&a.ns, &env.client, "udp", NODE4, 8053, 53);
    assert!(
        env.udp_flows(8053).contains("dport=8053"),
        "no flow to flush: {}",
        env.udp_flows(8053)
    );
    env.del(&a, Value::Null, Some(&result));
    assert_eq!(env.udp_flows(8053).trim(), "", "flow survived DEL");
}

#[test]
fn gc_removes_mappings_of_attachments_not_listed() {
    let env = Env::new();
    let a = Ctr::new();
    let b = Ctr::new();
    env.add(&a, one(8080));
    env.add(&b, one(8081));
    let gc = json!({"cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": a.id, "ifname": "eth0"}]});
    env.portmap("GC", &a, gc).ok();
    let left = env.elements("hostports4");
    assert!(
        left.iter().all(|e| e.contains(" 8080 ")) && left.len() == 2,
        "{left:?}"
    );
    assert_eq!(env.records(), [format!("{}.eth0.portmap.json", a.id)]);
}

#[test]
fn status_is_50_when_nft_is_unusable() {
    let env = Env::new();
    let a = Ctr::new();
    env.portmap("STATUS", &a, json!({"cniVersion": "1.1.0"})).ok();
    let path = a.ns.path();
    let out = env.node.plugin(
        "portmap",
        "STATUS",
        // nsenter is in /usr/bin, nft in /usr/sbin: the plugin finds no nft.
        &[("PATH", "/usr/bin"), ("CNI_NETNS", &path)],
        &json!({"cniVersion": "1.1.0", "name": NET, "type": "portmap"}).to_string(),
    );
    assert!(
        !std::path::Path::new("/usr/bin/nft").exists(),
        "this test needs nft outside /usr/bin"
    );
    out.err(50, "nft");
}

#[test]
fn every_bad_input_fails_with_its_code_and_applies_nothing() {
    let env = Env::new();
    let a = Ctr::new();
    let result = env.add(&a, json!([]));
    let v4_only = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": a.ns.path()}],
        "ips": [{"address": "10.77.0.9/24", "interface": 0}]});
    let m = |v: Value| json!({"runtimeConfig": {"portMappings": v}, "prevResult": result});
    let cases: Vec<(Value, u64, &str)> = vec![
        (
            json!({"runtimeConfig": {"portMappings": one(8080)}}),
            7,
            "chained",
        ),
        (
            m(json!([{"hostPort": 0, "containerPort": 80}])),
            7,
            "portMappings[0]",
        ),
        (m(json!([{"hostPort": 70000, "containerPort": 80}])), 7, "70000"),
        (
            m(json!([{"hostPort": 80, "containerPort": 0}])),
            7,
            "containerPort 0",
        ),
        (
            m(json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}])),
            7,
            "icmp",
        ),
        (
            m(json!([{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}])),
            7,
            "nope",
        ),
        (
            m(json!([{"hostPort": 80, "containerPort": 80}, {"hostPort": 80, "containerPort": 81}])),
            7,
            "both want",
        ),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "fd77::1"}]},
                   "prevResult": v4_only}),
            7,
            "no IPv6",
        ),
        (json!({"backend": "iptables", "prevResult": result}), 2, "backend"),
        (
            json!({"conditionsV4": ["ip saddr 1.2.3.4"], "prevResult": result}),
            2,
            "conditionsV4",
        ),
        (json!({"markMasqBit": 40, "prevResult": result}), 7, "markMasqBit"),
        (
            json!({"markMasqBit": 1, "externalSetMarkChain": "X", "prevResult": result}),
            7,
            "externalSetMarkChain",
        ),
        (json!({"snat": "yes", "prevResult": result}), 6, "decode"),
    ];
    for (conf, code, needle) in cases {
        env.portmap("ADD", &a, conf.clone()).err(code, needle);
        assert!(env.records().is_empty(), "{conf}: a record was written");
        assert!(
            env.elements("hostports4").is_empty(),
            "{conf}: an element was added"
        );
    }
    let passthrough = env.portmap("ADD", &a, json!({"prevResult": result})).ok();
    assert_eq!(passthrough["ips"], result["ips"]);
}
