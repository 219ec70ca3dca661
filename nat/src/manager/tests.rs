//! Unit tests of the NAT manager over the fake backend.

use serde_json::json;

use super::*;
use crate::backend::testing::FakeBackend;
use crate::model::{MasqEntry, SpoofEntry};

fn record(container: &str, ip: &str) -> AttachmentRecord {
    let mut r = AttachmentRecord::new(Owner::new("net1", container, "eth0"));
    r.masq = vec![MasqEntry {
        ip: ip.parse().unwrap(),
        subnet: "10.88.0.0/16".parse().unwrap(),
    }];
    r
}

fn manager() -> (tempfile::TempDir, FakeBackend, NatManager<FakeBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new();
    let m = NatManager::new(dir.path(), fake.clone());
    (dir, fake, m)
}

#[test]
fn add_writes_record_and_applies_one_transaction() {
    let (_dir, fake, m) = manager();
    let r = record("aaaa", "10.88.0.2");
    m.add(&r).unwrap();
    assert_eq!(fake.scripts(), [plan_add(&r).full()]);
    let lock = m.store().lock().unwrap();
    let stored = m.store().read(&lock, &r.owner, Source::Bridge).unwrap().unwrap();
    assert_eq!(stored.masq, r.masq);
}

#[test]
fn failed_add_leaves_no_record_and_keeps_nft_stderr() {
    let (_dir, fake, m) = manager();
    fake.fail_apply(Some("Error: Could not process rule: File exists"));
    let r = record("aaaa", "10.88.0.2");
    let err = m.add(&r).unwrap_err();
    assert!(err.to_string().contains("File exists"), "{err}");
    assert!(m.records().unwrap().records.is_empty());
}

#[test]
fn failed_re_add_restores_the_previous_record() {
    let (_dir, fake, m) = manager();
    let old = record("aaaa", "10.88.0.2");
    m.add(&old).unwrap();
    fake.fail_apply(Some("boom"));
    m.add(&record("aaaa", "10.88.0.7")).unwrap_err();
    assert_eq!(m.records().unwrap().records[0].masq, old.masq);
}

#[test]
fn re_add_with_new_address_replaces_in_one_transaction() {
    let (_dir, fake, m) = manager();
    let old = record("aaaa", "10.88.0.2");
    let new = record("aaaa", "10.88.0.7");
    m.add(&old).unwrap();
    m.add(&new).unwrap();
    assert_eq!(
        fake.scripts()[1],
        plan_replace(&[&old], &new, &Claims::default()).full()
    );
}

#[test]
fn del_removes_record_and_twice_is_ok() {
    let (_dir, fake, m) = manager();
    let r = record("aaaa", "10.88.0.2");
    m.add(&r).unwrap();
    m.del(&r.owner, Source::Bridge).unwrap();
    m.del(&r.owner, Source::Bridge).unwrap();
    assert_eq!(fake.scripts().len(), 2, "second DEL sends nothing");
    assert_eq!(fake.scripts()[1], plan_remove(&r, &Claims::default()).full());
    assert!(m.records().unwrap().records.is_empty());
}

#[test]
fn del_keeps_elements_another_owner_claims() {
    let (_dir, fake, m) = manager();
    let a = record("aaaa", "10.88.0.2");
    let b = record("bbbb", "10.88.0.2");
    m.add(&a).unwrap();
    m.add(&b).unwrap();
    m.del(&a.owner, Source::Bridge).unwrap();
    assert_eq!(
        fake.scripts().len(),
        2,
        "nothing of A's is unclaimed, so no transaction"
    );
    m.del(&b.owner, Source::Bridge).unwrap();
    assert!(fake.scripts()[2].contains("delete element inet corral masq_src4 { 10.88.0.2 }"));
}

#[test]
fn failed_del_keeps_the_record_for_a_retry() {
    let (_dir, fake, m) = manager();
    let r = record("aaaa", "10.88.0.2");
    m.add(&r).unwrap();
    fake.fail_apply(Some("boom"));
    m.del(&r.owner, Source::Bridge).unwrap_err();
    assert_eq!(m.records().unwrap().records.len(), 1);
    fake.fail_apply(None);
    m.del(&r.owner, Source::Bridge).unwrap();
    assert!(m.records().unwrap().records.is_empty());
}

#[test]
fn check_names_missing_elements_and_chains() {
    let (_dir, fake, m) = manager();
    let mut r = record("aaaa", "10.88.0.2");
    r.spoof = Some(SpoofEntry {
        host_ifname: "veth0a".into(),
        mac: [2, 0, 0, 0, 0, 2],
    });
    m.add(&r).unwrap();
    let err = m.check(&r.owner, Source::Bridge).unwrap_err().to_string();
    assert!(
        err.contains("table inet corral") && err.contains("table bridge corral"),
        "{err}"
    );
    fake.set_table(
        "inet",
        "corral",
        json!({"nftables": [
        {"chain": {"family": "inet", "name": "postrouting"}},
        {"set": {"family": "inet", "name": "masq_src4", "elem": ["10.88.0.2"]}},
        {"set": {"family": "inet", "name": "masq_skip4", "elem": [
            {"concat": ["10.88.0.2", {"prefix": {"addr": "10.88.0.0", "len": 16}}]}]}}]}),
    );
    fake.set_table(
        "bridge",
        "corral",
        json!({"nftables": [
        {"set": {"family": "bridge", "name": "spoof_ports", "elem": ["veth0a"]}}]}),
    );
    let err = m.check(&r.owner, Source::Bridge).unwrap_err().to_string();
    assert!(!err.contains("masq"), "{err}");
    assert!(err.contains("chain bridge corral prerouting"), "{err}");
    assert!(
        err.contains("spoof_allowed { \"veth0a\" . 02:00:00:00:00:02 }"),
        "{err}"
    );
    assert!(!err.contains("spoof_ports"), "{err}");
}

#[test]
fn check_without_record_fails() {
    let (_dir, _fake, m) = manager();
    let err = m
        .check(&Owner::new("net1", "nope", "eth0"), Source::Bridge)
        .unwrap_err();
    assert!(matches!(err, NatError::NoRecord { .. }), "{err}");
}

#[test]
fn gc_removes_only_invalid_attachments_of_that_network() {
    let (_dir, fake, m) = manager();
    m.add(&record("keep", "10.88.0.2")).unwrap();
    m.add(&record("drop", "10.88.0.3")).unwrap();
    let mut other_net = record("other", "10.88.0.4");
    other_net.owner.network = "net2".into();
    m.add(&other_net).unwrap();
    m.gc("net1", Source::Bridge, &[("keep".into(), "eth0".into())])
        .unwrap();
    let owners: Vec<String> = m
        .records()
        .unwrap()
        .records
        .iter()
        .map(|r| r.owner.to_string())
        .collect();
    assert_eq!(owners, ["net1/keep/eth0", "net2/other/eth0"]);
    assert!(fake.scripts()[3].contains("delete element inet corral masq_src4 { 10.88.0.3 }"));
}

#[test]
fn gc_keeps_going_and_reports_every_failure() {
    let (_dir, fake, m) = manager();
    m.add(&record("a", "10.88.0.2")).unwrap();
    m.add(&record("b", "10.88.0.3")).unwrap();
    fake.fail_apply(Some("boom"));
    let err = m.gc("net1", Source::Bridge, &[]).unwrap_err();
    assert!(matches!(&err, NatError::Multiple(v) if v.len() == 2), "{err}");
}

#[test]
fn status_maps_unusable_nft_to_50() {
    let (_dir, fake, m) = manager();
    m.status().unwrap();
    fake.set_unusable(true);
    assert_eq!(m.status().unwrap_err().code(), 50);
}

#[test]
fn reconcile_re_adds_all_records_in_one_transaction() {
    let (_dir, fake, m) = manager();
    let a = record("a", "10.88.0.2");
    let b = record("b", "10.88.0.3");
    m.add(&a).unwrap();
    m.add(&b).unwrap();
    let report = m.reconcile().unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(fake.scripts()[2], plan_reconcile([&a, &b]).0);
}

#[test]
fn invalid_record_is_refused_before_anything_happens() {
    let (dir, fake, m) = manager();
    let mut r = record("a", "10.88.0.2");
    r.owner.network = "../escape".into();
    assert_eq!(m.add(&r).unwrap_err().code(), 7);
    assert!(fake.scripts().is_empty());
    assert!(!dir.path().join("nat").exists());
}

fn ports(container: &str, ip: &str, netns: &str) -> AttachmentRecord {
    use crate::model::{PortForwarding, PortMapping, Protocol};
    let mut r = AttachmentRecord::with_source(Owner::new("net1", container, "eth0"), Source::Portmap);
    r.ports = Some(PortForwarding {
        mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 8080,
            container_ip: ip.parse().unwrap(),
            container_port: 80,
        }],
        subnets: vec!["10.88.0.0/16".parse().unwrap()],
        snat: true,
        masq_all: false,
    });
    r.netns = Some(netns.into());
    r
}

#[test]
fn a_live_owner_keeps_its_port_and_the_loser_gets_102() {
    let (_dir, fake, m) = manager();
    m.add(&ports("aaaa", "10.88.0.2", "/proc/self/ns/net")).unwrap();
    let err = m
        .add(&ports("bbbb", "10.88.0.3", "/proc/self/ns/net"))
        .unwrap_err();
    assert_eq!(err.code(), 102, "{err}");
    assert!(
        err.to_string().contains("net1/aaaa/eth0") && err.to_string().contains("tcp 8080"),
        "{err}"
    );
    assert_eq!(fake.scripts().len(), 1, "nothing applied for the loser");
    assert_eq!(m.records().unwrap().records.len(), 1);
}

#[test]
fn a_stale_owner_is_replaced_in_the_same_transaction() {
    let (_dir, fake, m) = manager();
    let stale = ports("aaaa", "10.88.0.2", "/nonexistent/corral-test-netns");
    m.add(&stale).unwrap();
    let new = ports("bbbb", "10.88.0.3", "/proc/self/ns/net");
    m.add(&new).unwrap();
    assert_eq!(
        fake.scripts()[1],
        plan_replace(&[&stale], &new, &Claims::default()).full()
    );
    let owners: Vec<String> = m
        .records()
        .unwrap()
        .records
        .iter()
        .map(|r| r.owner.to_string())
        .collect();
    assert_eq!(owners, ["net1/bbbb/eth0"]);
}

#[test]
fn bridge_and_portmap_records_of_one_owner_are_deleted_separately() {
    let (_dir, _fake, m) = manager();
    let bridge = record("aaaa", "10.88.0.2");
    m.add(&bridge).unwrap();
    m.add(&ports("aaaa", "10.88.0.2", "/proc/self/ns/net")).unwrap();
    let removed = m.del(&bridge.owner, Source::Portmap).unwrap().unwrap();
    assert_eq!(removed.source, Source::Portmap);
    assert_eq!(
        m.records().unwrap().records,
        [m.record(&bridge.owner, Source::Bridge).unwrap().unwrap()]
    );
    assert!(m.del(&bridge.owner, Source::Portmap).unwrap().is_none());
}

#[test]
fn staleness_reads_boot_id_and_netns() {
    let live = ports("a", "10.88.0.2", "/proc/self/ns/net");
    assert_eq!(staleness(&live, None), None);
    let mut other_boot = live.clone();
    other_boot.boot_id = Some("old".into());
    assert!(staleness(&other_boot, Some("new")).is_some());
    assert!(staleness(&ports("a", "10.88.0.2", "/nonexistent/x"), None).is_some());
    let mut moved = live.clone();
    moved.netns_ino = Some(1);
    assert!(staleness(&moved, None).is_some());
    let mut unknown = live;
    unknown.netns = None;
    assert_eq!(staleness(&unknown, None), None);
}

#[test]
fn intact_skeleton_gets_the_element_lines_alone() {
    let (_dir, fake, m) = manager();
    fake.set_skeleton_intact(Ok(true));
    let r = record("aaaa", "10.88.0.2");
    m.add(&r).unwrap();
    m.del(&r.owner, Source::Bridge).unwrap();
    let add = plan_add(&r);
    let del = plan_remove(&r, &Claims::default());
    assert_eq!(fake.scripts(), [add.elements_only(), del.elements_only()]);
    assert!(!fake.scripts()[0].contains("add chain"));
}

#[test]
fn damaged_or_unreadable_skeleton_gets_the_full_script() {
    for answer in [Ok(false), Err("netlink: permission denied")] {
        let (_dir, fake, m) = manager();
        fake.set_skeleton_intact(answer);
        let r = record("aaaa", "10.88.0.2");
        m.add(&r).unwrap();
        m.del(&r.owner, Source::Bridge).unwrap();
        let del = plan_remove(&r, &Claims::default()).full();
        assert_eq!(fake.scripts(), [plan_add(&r).full(), del], "{answer:?}");
    }
}

#[test]
fn failed_element_lines_are_retried_once_with_the_skeleton() {
    let (_dir, fake, m) = manager();
    fake.set_skeleton_intact(Ok(true));
    fake.fail_next_applies(1);
    let r = record("aaaa", "10.88.0.2");
    m.add(&r).unwrap();
    assert_eq!(fake.attempts(), 2);
    assert_eq!(fake.scripts(), [plan_add(&r).full()]);
    assert_eq!(m.records().unwrap().records.len(), 1);

    // Both failing: the ADD fails with nft's error and leaves no record behind.
    fake.fail_next_applies(2);
    let other = record("bbbb", "10.88.0.3");
    let err = m.add(&other).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
    assert_eq!(fake.attempts(), 4, "one retry only");
    assert_eq!(m.records().unwrap().records.len(), 1);
}

#[test]
fn reconcile_always_sends_the_skeleton() {
    let (_dir, fake, m) = manager();
    fake.set_skeleton_intact(Ok(true));
    let a = record("a", "10.88.0.2");
    m.add(&a).unwrap();
    m.reconcile().unwrap();
    assert_eq!(fake.scripts()[1], plan_reconcile([&a]).0);
    assert!(fake.scripts()[1].contains("flush chain inet corral postrouting"));
}

#[test]
fn pure_removals_with_an_intact_skeleton_go_over_netlink() {
    let (_dir, fake, m) = manager();
    fake.set_skeleton_intact(Ok(true));
    fake.set_remove_elements(Ok(()));
    let (a, b) = (record("a", "10.88.0.2"), record("b", "10.88.0.3"));
    m.add(&a).unwrap();
    m.add(&b).unwrap();
    assert_eq!(fake.removals().len(), 0, "additions never go over netlink");
    m.del(&a.owner, Source::Bridge).unwrap();
    m.gc("net1", Source::Bridge, &[]).unwrap();
    assert_eq!(
        fake.removals(),
        [
            plan_remove(&a, &Claims::default()).removals,
            plan_remove(&b, &Claims::default()).removals
        ]
    );
    assert_eq!(fake.removals()[0], record_elements(&a));
    assert_eq!(
        fake.scripts(),
        [plan_add(&a).elements_only(), plan_add(&b).elements_only()]
    );
    assert!(m.records().unwrap().records.is_empty());
}

#[test]
fn removals_use_nft_when_the_skeleton_is_damaged_or_netlink_fails() {
    // Damaged skeleton: the full script, netlink is not tried.
    let (_dir, fake, m) = manager();
    fake.set_remove_elements(Ok(()));
    let r = record("aaaa", "10.88.0.2");
    m.add(&r).unwrap();
    m.del(&r.owner, Source::Bridge).unwrap();
    assert!(fake.removals().is_empty());
    assert_eq!(fake.scripts()[1], plan_remove(&r, &Claims::default()).full());

    // Netlink fails (or the backend cannot): the element lines go to nft instead.
    for answer in [Some(Err("netlink: EPERM")), None] {
        let (_dir, fake, m) = manager();
        fake.set_skeleton_intact(Ok(true));
        if let Some(answer) = answer {
            fake.set_remove_elements(answer);
        }
        m.add(&r).unwrap();
        m.del(&r.owner, Source::Bridge).unwrap();
        assert!(fake.removals().is_empty());
        let del = plan_remove(&r, &Claims::default());
        assert_eq!(fake.scripts()[1], del.elements_only(), "{answer:?}");
        assert!(m.records().unwrap().records.is_empty());
    }
}

#[test]
fn replacing_a_record_adds_so_it_goes_to_nft() {
    let (_dir, fake, m) = manager();
    fake.set_skeleton_intact(Ok(true));
    fake.set_remove_elements(Ok(()));
    m.add(&record("aaaa", "10.88.0.2")).unwrap();
    m.add(&record("aaaa", "10.88.0.3")).unwrap();
    assert!(fake.removals().is_empty());
    assert_eq!(fake.scripts().len(), 2);
    assert!(fake.scripts()[1].contains("delete element inet corral masq_src4 { 10.88.0.2 }"));
}

#[test]
fn a_removal_with_nothing_left_to_remove_sends_nothing() {
    let (_dir, fake, m) = manager();
    fake.set_skeleton_intact(Ok(true));
    fake.set_remove_elements(Ok(()));
    let (a, mut b) = (record("a", "10.88.0.2"), record("b", "10.88.0.2"));
    b.owner.ifname = "eth1".into();
    m.add(&a).unwrap();
    m.add(&b).unwrap();
    // b claims every element of a: the DEL removes nothing and sends nothing.
    m.del(&a.owner, Source::Bridge).unwrap();
    assert!(fake.removals().is_empty());
    assert_eq!(fake.scripts().len(), 2);
}
