//! portmap with real traffic: bridge + host-local + portmap run as a conflist inside a node namespace, and TCP
//! and UDP request/reply exchanges through every kind of mapping: all host addresses (from a client namespace
//! on its own link, IPv4 and IPv6), a specific hostIP, localhost, and hairpin from the container itself and
//! from a neighbour. Plus the CVE-2020-8558 guard, and reconcile after `nft flush ruleset`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod portmap_support;

use corral_nat::{EntryState, NatManager, NftCli};
use portmap_support::{assert_exchange, ctr_ip, exchange, Ctr, Env, NODE4, NODE6};
use serde_json::json;

fn web_mappings() -> serde_json::Value {
    json!([
        {"hostPort": 8080, "containerPort": 80},
        {"hostPort": 8053, "containerPort": 53, "protocol": "udp"},
        {"hostPort": 8081, "containerPort": 81, "protocol": "TCP", "hostIP": NODE4},
        {"hostPort": 8054, "containerPort": 54, "protocol": "udp", "hostIP": NODE4},
    ])
}

#[test]
fn traffic_reaches_the_container_through_every_kind_of_mapping() {
    let env = Env::new();
    let a = Ctr::new();
    let b = Ctr::new();
    let result = env.add(&a, web_mappings());
    env.add(&b, json!([]));
    let node = &env.node.ns;
    for (proto, port, listen) in [("tcp", 8080, 80), ("udp", 8053, 53)] {
        assert_exchange(&a.ns, &env.client, proto, NODE4, port, listen);
        assert_exchange(&a.ns, &env.client, proto, NODE6, port, listen);
        assert_exchange(&a.ns, node, proto, "127.0.0.1", port, listen);
        assert_exchange(&a.ns, &a.ns, proto, NODE4, port, listen);
        assert_exchange(&a.ns, &b.ns, proto, NODE4, port, listen);
    }
    for (proto, port, listen) in [("tcp", 8081, 81), ("udp", 8054, 54)] {
        assert_exchange(&a.ns, &env.client, proto, NODE4, port, listen);
        assert_exchange(&a.ns, node, proto, NODE4, port, listen);
    }
    // A hostIP mapping answers only on its address: the container's gateway address is local too.
    let (client, _) = exchange(&a.ns, &env.client, "tcp", "10.77.0.1", 8081, 81);
    assert!(
        !client.contains("PONG"),
        "hostIP mapping answered on another address"
    );
    assert_eq!(node.sysctl("net/ipv4/conf/pmbr0/route_localnet"), "1");
    assert_eq!(
        node.sysctl("net/ipv4/conf/cl0/route_localnet"),
        "0",
        "only the container's interface"
    );
    assert!(ctr_ip(&result, false).starts_with("10.77.0."));
}

#[test]
fn hairpin_and_localhost_are_masqueraded_and_outside_clients_are_not() {
    let env = Env::new();
    let a = Ctr::new();
    env.add(&a, json!([{"hostPort": 8080, "containerPort": 80}]));
    let peer = |from: &corral_tests::Netns, dst: &str| {
        let l = a.ns.listen_tcp(80);
        assert!(from.tcp_send(dst, 8080, "x"), "connect from {}", from.name);
        l.finish().0
    };
    assert_eq!(
        peer(&env.client, NODE4),
        "192.168.77.2",
        "outside clients keep their address"
    );
    assert_eq!(
        peer(&env.node.ns, "127.0.0.1"),
        "10.77.0.1",
        "localhost is masqueraded"
    );
    assert_eq!(peer(&a.ns, NODE4), "10.77.0.1", "hairpin is masqueraded");
}

#[test]
fn masq_all_masquerades_outside_clients_and_snat_false_skips_localhost() {
    let env = Env::with_portmap(json!({"masqAll": true}));
    let a = Ctr::new();
    env.add(&a, json!([{"hostPort": 8080, "containerPort": 80}]));
    let l = a.ns.listen_tcp(80);
    assert!(env.client.tcp_send(NODE4, 8080, "x"));
    assert_eq!(l.finish().0, "10.77.0.1");

    let env = Env::with_portmap(json!({"snat": false}));
    let a = Ctr::new();
    env.add(&a, json!([{"hostPort": 8080, "containerPort": 80}]));
    assert!(
        env.elements("dnat_masq4").is_empty(),
        "{:?}",
        env.elements("dnat_masq4")
    );
    assert_exchange(&a.ns, &env.client, "tcp", NODE4, 8080, 80);
}

#[test]
fn loopback_traffic_arriving_from_a_container_is_dropped() {
    let env = Env::new();
    let a = Ctr::new();
    env.add(&a, json!([{"hostPort": 8080, "containerPort": 80}]));
    // Make the container send 127.0.0.0/8 out of eth0 to the node (as an attacker on the bridge could).
    a.ns.ip(&[
        "route",
        "del",
        "local",
        "127.0.0.0/8",
        "dev",
        "lo",
        "table",
        "local",
    ]);
    a.ns.ip(&["route", "add", "127.0.0.0/8", "via", "10.77.0.1", "dev", "eth0"]);
    a.ns.run(&["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"]);
    let try_reach = || {
        let l = env.node.ns.listen_tcp(7777);
        let ok = a.ns.tcp_send("127.0.0.2", 7777, "x");
        drop(l);
        ok
    };
    assert!(
        !try_reach(),
        "a node service on 127.0.0.1 was reachable from the bridge"
    );
    // Control: without the guard the same packet gets in (route_localnet=1 on the bridge allows it).
    env.node
        .ns
        .run(&["nft", "flush", "chain", "inet", "corral", "input"]);
    assert!(
        try_reach(),
        "control: without the guard the connection should succeed"
    );
}

#[test]
fn reconcile_restores_forwarding_after_nft_flush_ruleset() {
    let env = Env::new();
    let a = Ctr::new();
    env.add(&a, web_mappings());
    let m = NatManager::new(&env.node.state, NftCli::in_netns(env.node.ns.path()));
    let listing = m.list_ports().unwrap();
    assert_eq!(listing.entries.len(), 6, "{:?}", listing.entries);
    assert!(listing
        .entries
        .iter()
        .all(|e| e.state == EntryState::Active && e.owner.is_some()));

    env.node.ns.run(&["nft", "flush", "ruleset"]);
    let (client, _) = exchange(&a.ns, &env.client, "tcp", NODE4, 8080, 80);
    assert!(!client.contains("PONG"), "forwarding survived the flush?");
    let listing = m.list_ports().unwrap();
    assert!(
        listing.entries.iter().all(|e| e.state == EntryState::Missing),
        "{:?}",
        listing.entries
    );

    let report = m.reconcile().unwrap();
    assert!(report.conflicts.is_empty() && report.unreadable.is_empty());
    assert_exchange(&a.ns, &env.client, "tcp", NODE4, 8080, 80);
    assert_exchange(&a.ns, &env.client, "udp", NODE6, 8053, 53);
    assert_exchange(&a.ns, &env.node.ns, "tcp", "127.0.0.1", 8080, 80);
    env.node.ns.run(&[
        "nft",
        "delete",
        "element",
        "inet",
        "corral",
        "hostports4",
        "{ tcp . 8080 }",
    ]);
    env.node.ns.run(&[
        "nft",
        "add",
        "element",
        "inet",
        "corral",
        "hostports4",
        "{ tcp . 9999 : 10.77.0.99 . 1 }",
    ]);
    let states: Vec<(u16, EntryState)> = m
        .list_ports()
        .unwrap()
        .entries
        .iter()
        .map(|e| (e.host_port, e.state))
        .collect();
    assert!(states.contains(&(8080, EntryState::Missing)), "{states:?}");
    assert!(states.contains(&(9999, EntryState::NotRecorded)), "{states:?}");
}
