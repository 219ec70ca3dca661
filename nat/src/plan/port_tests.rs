//! Golden plans for port forwarding (the portmap plugin's records).

use super::*;
use crate::model::{Owner, PortForwarding, PortMapping, Protocol, Source};

fn golden(name: &str, actual: &str) {
    super::tests::golden(name, actual);
}

fn mapping(protocol: Protocol, host_ip: Option<&str>, host_port: u16, ctr: &str, port: u16) -> PortMapping {
    PortMapping {
        protocol,
        host_ip: host_ip.map(|h| h.parse().unwrap()),
        host_port,
        container_ip: ctr.parse().unwrap(),
        container_port: port,
    }
}

fn web(container: &str, v4: &str, v6: &str) -> AttachmentRecord {
    let mut r = AttachmentRecord::with_source(Owner::new("net1", container, "eth0"), Source::Portmap);
    r.ports = Some(PortForwarding {
        mappings: vec![
            mapping(Protocol::Tcp, None, 8080, v4, 80),
            mapping(Protocol::Tcp, None, 8080, v6, 80),
            mapping(Protocol::Udp, Some("192.168.50.1"), 5353, v4, 53),
            mapping(Protocol::Sctp, Some("fd50::1"), 9999, v6, 9),
        ],
        subnets: vec!["10.88.0.0/16".parse().unwrap(), "fd00:88::/64".parse().unwrap()],
        snat: true,
        masq_all: false,
    });
    r
}

#[test]
fn add_ports_dual_stack_with_host_ips() {
    golden(
        "add-ports-dual-stack.nft",
        &plan_add(&web("aaaa", "10.88.0.2", "fd00:88::2")).full(),
    );
}

#[test]
fn masq_all_replaces_hairpin_and_localhost_with_one_element_per_address() {
    let mut r = web("aaaa", "10.88.0.2", "fd00:88::2");
    if let Some(p) = r.ports.as_mut() {
        p.masq_all = true;
    }
    let script = plan_add(&r).full();
    golden("add-ports-masq-all.nft", &script);
    assert!(!script.contains("127.0.0.0/8 . 10.88.0.2"));
}

#[test]
fn no_snat_adds_only_the_map_elements() {
    let mut r = web("aaaa", "10.88.0.2", "fd00:88::2");
    if let Some(p) = r.ports.as_mut() {
        p.snat = false;
        p.masq_all = true;
    }
    let script = plan_add(&r).full();
    golden("add-ports-no-snat.nft", &script);
    assert!(!script.contains("add element inet corral dnat_masq"));
}

#[test]
fn remove_ports_re_adds_map_elements_with_their_data_before_deleting_by_key() {
    golden(
        "remove-ports.nft",
        &plan_remove(&web("aaaa", "10.88.0.2", "fd00:88::2"), &Claims::default()).full(),
    );
}

#[test]
fn replacing_a_stale_owner_moves_the_port_in_one_transaction() {
    let stale = web("dead", "10.88.0.5", "fd00:88::5");
    let mut new = AttachmentRecord::with_source(Owner::new("net1", "bbbb", "eth0"), Source::Portmap);
    new.ports = Some(PortForwarding {
        mappings: vec![mapping(Protocol::Tcp, None, 8080, "10.88.0.7", 8080)],
        subnets: vec!["10.88.0.0/16".parse().unwrap()],
        snat: true,
        masq_all: false,
    });
    let script = plan_replace(&[&stale], &new, &Claims::default()).full();
    golden("replace-stale-port-owner.nft", &script);
    let delete = script
        .find("delete element inet corral hostports4 { tcp . 8080 }")
        .unwrap();
    let add = script
        .find("add element inet corral hostports4 { tcp . 8080 comment")
        .unwrap();
    assert!(delete < add, "the stale element goes before the new one arrives");
}

#[test]
fn reconcile_reports_a_second_owner_of_one_host_port() {
    let a = web("aaaa", "10.88.0.2", "fd00:88::2");
    let b = web("bbbb", "10.88.0.3", "fd00:88::3");
    let (script, conflicts) = plan_reconcile([&a, &b]);
    assert!(script.contains("tcp . 8080 comment \"net1/aaaa/eth0\" : 10.88.0.2 . 80"));
    assert!(!script.contains("10.88.0.3 . 80"));
    assert_eq!(conflicts.len(), 4, "{conflicts:?}");
    assert!(conflicts.iter().all(|c| c.comment == "net1/bbbb/eth0"));
}
