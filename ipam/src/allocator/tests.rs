use super::*;
use crate::config::{parse, NetConf};
use crate::store::MemoryStore;
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn att(id: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        ifname: "eth0".into(),
    }
}

fn cfg_with(ipam: serde_json::Value, requested: Option<&str>) -> IpamConfig {
    let conf: NetConf =
        serde_json::from_value(json!({"cniVersion": "1.0.0", "name": "net1", "ipam": ipam})).unwrap();
    parse(&conf, requested).unwrap()
}

fn cfg(subnet: &str) -> IpamConfig {
    cfg_with(json!({"subnet": subnet}), None)
}

fn add(store: &mut MemoryStore, cfg: &IpamConfig, id: &str) -> Result<Vec<String>, IpamError> {
    allocate(store, cfg, &att(id), &AddContext::default())
        .map(|ips| ips.iter().map(|c| c.address.to_string()).collect())
}

#[test]
fn allocates_in_order_skipping_the_gateway() {
    let c = cfg("10.1.0.0/29");
    let mut s = MemoryStore::new();
    assert_eq!(add(&mut s, &c, "a").unwrap(), ["10.1.0.2/29"]);
    assert_eq!(add(&mut s, &c, "b").unwrap(), ["10.1.0.3/29"]);
    assert_eq!(s.last.get(&0), Some(&ip("10.1.0.3")));
    assert_eq!(s.files.get(&ip("10.1.0.2")), Some(&Holder::Attachment(att("a"))));
    let full = allocate(&mut s, &c, &att("x"), &AddContext::default()).unwrap();
    assert_eq!(full[0].gateway, Some(ip("10.1.0.1")));
    assert_eq!(full[0].interface, None);
}

#[test]
fn round_robin_continues_after_release_and_wraps() {
    let c = cfg("10.1.0.0/29"); // .2 .. .6 allocatable
    let mut s = MemoryStore::new();
    for id in ["a", "b", "c"] {
        add(&mut s, &c, id).unwrap();
    }
    release(&mut s, &att("a"));
    // Next is .5 (after the last, .4), not the freed .2.
    assert_eq!(add(&mut s, &c, "d").unwrap(), ["10.1.0.5/29"]);
    assert_eq!(add(&mut s, &c, "e").unwrap(), ["10.1.0.6/29"]);
    // Wraps to the freed .2.
    assert_eq!(add(&mut s, &c, "f").unwrap(), ["10.1.0.2/29"]);
}

#[test]
fn exhaustion_on_a_slash_30_names_network_and_set() {
    let c = cfg("10.1.0.0/30");
    let mut s = MemoryStore::new();
    assert_eq!(add(&mut s, &c, "a").unwrap(), ["10.1.0.2/30"]);
    let e = add(&mut s, &c, "b").unwrap_err();
    assert_eq!(e.code(), 100);
    assert_eq!(
        e.to_string(),
        "no IP addresses available in range set 10.1.0.0/30 of network \"net1\""
    );
    assert!(
        !s.index.contains_key(&att("b")),
        "a failed ADD leaves no index entry"
    );
}

#[test]
fn duplicate_allocation_is_refused() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    add(&mut s, &c, "a").unwrap();
    let e = add(&mut s, &c, "a").unwrap_err();
    assert_eq!(e.code(), 7);
    assert_eq!(
        e.to_string(),
        "network \"net1\": 10.1.0.2 has been allocated to a, duplicate allocation is not allowed"
    );
    // Another interface of the same container is a different attachment.
    let other = Attachment {
        ifname: "net1".into(),
        ..att("a")
    };
    assert!(allocate(&mut s, &c, &other, &AddContext::default()).is_ok());
}

#[test]
fn requested_ip_is_allocated_and_a_taken_one_is_refused() {
    let c = cfg_with(json!({"subnet": "10.1.0.0/24"}), Some("10.1.0.50"));
    let mut s = MemoryStore::new();
    assert_eq!(add(&mut s, &c, "a").unwrap(), ["10.1.0.50/24"]);
    assert_eq!(
        s.last.get(&0),
        Some(&ip("10.1.0.50")),
        "the reference records requested IPs too"
    );
    let e = add(&mut s, &c, "b").unwrap_err();
    assert_eq!(e.code(), 100);
    assert!(
        e.to_string()
            .contains("requested IP address 10.1.0.50 is not available"),
        "{e}"
    );
    assert!(!s.index.contains_key(&att("b")));
}

#[test]
fn dual_stack_takes_one_address_per_set() {
    let c = cfg_with(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120", "gateway": "fd00::ff"}]]}),
        None,
    );
    let mut s = MemoryStore::new();
    let ips = allocate(&mut s, &c, &att("a"), &AddContext::default()).unwrap();
    assert_eq!(ips[0].address.to_string(), "10.1.0.2/24");
    assert_eq!(ips[1].address.to_string(), "fd00::1/120");
    assert_eq!(ips[1].gateway, Some(ip("fd00::ff")));
    assert_eq!(s.last.get(&1), Some(&ip("fd00::1")));
    assert_eq!(
        s.index.get(&att("a")).unwrap().ips,
        [ip("10.1.0.2"), ip("fd00::1")]
    );
}

#[test]
fn v6_round_robin_and_exhaustion() {
    let c = cfg_with(json!({"ranges": [[{"subnet": "fd00::/126"}]]}), None);
    let mut s = MemoryStore::new();
    assert_eq!(add(&mut s, &c, "a").unwrap(), ["fd00::2/126"]);
    assert_eq!(add(&mut s, &c, "b").unwrap(), ["fd00::3/126"]);
    assert_eq!(add(&mut s, &c, "c").unwrap_err().code(), 100);
}

#[test]
fn later_set_failure_rolls_back_earlier_sets() {
    let c = cfg_with(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]]}),
        None,
    );
    let mut s = MemoryStore::new();
    add(&mut s, &c, "a").unwrap(); // takes 10.2.0.2, the only one
    let e = add(&mut s, &c, "b").unwrap_err();
    assert_eq!(e.code(), 100);
    assert!(e.to_string().contains("10.2.0.0/30"), "{e}");
    assert_eq!(s.files.len(), 2, "only a's addresses remain: {:?}", s.files);
    assert!(!s.index.contains_key(&att("b")));
}

#[test]
fn store_failure_rolls_back_and_keeps_going_next_time() {
    let c = cfg_with(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}),
        None,
    );
    let mut s = MemoryStore::new();
    s.fail_create.push(ip("10.2.0.2"));
    let e = add(&mut s, &c, "a").unwrap_err();
    assert_eq!(e.code(), 5, "{e}");
    assert!(s.files.is_empty() && s.index.is_empty());
    s.fail_create.clear();
    assert_eq!(add(&mut s, &c, "a").unwrap(), ["10.1.0.3/24", "10.2.0.2/24"]);
}

#[test]
fn rollback_keeps_what_the_attachment_held_before() {
    // a holds an address in a set no longer configured; a failed ADD must not drop it from the index.
    let mut s = MemoryStore::new();
    add(&mut s, &cfg("10.9.0.0/24"), "a").unwrap();
    let c = cfg_with(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]]}),
        None,
    );
    add(&mut s, &c, "z").unwrap();
    assert_eq!(add(&mut s, &c, "a").unwrap_err().code(), 100);
    assert_eq!(s.index.get(&att("a")).unwrap().ips, [ip("10.9.0.2")]);
}

#[test]
fn release_uses_the_index_and_only_removes_own_files() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    add(&mut s, &c, "a").unwrap();
    // A stale index address now held by someone else is left alone.
    s.index.get_mut(&att("a")).unwrap().ips.push(ip("10.1.0.9"));
    s.insert_foreign(ip("10.1.0.9"), Holder::Attachment(att("b")));
    let (released, errors) = release(&mut s, &att("a"));
    assert!(errors.is_empty());
    assert_eq!(released, [ip("10.1.0.2")]);
    assert!(s.files.contains_key(&ip("10.1.0.9")));
    assert!(s.index.is_empty());
    // Twice is fine.
    let (released, errors) = release(&mut s, &att("a"));
    assert!(released.is_empty() && errors.is_empty());
}

#[test]
fn release_without_index_walks_like_the_reference() {
    let mut s = MemoryStore::new();
    s.insert_foreign(ip("10.1.0.2"), Holder::Attachment(att("a")));
    s.insert_foreign(ip("10.1.0.3"), Holder::LegacyId("a".into()));
    s.insert_foreign(ip("10.1.0.4"), Holder::Attachment(att("b")));
    let (released, _) = release(&mut s, &att("a"));
    assert_eq!(
        released,
        [ip("10.1.0.2")],
        "exact matches first; legacy only when none"
    );
    let (released, _) = release(&mut s, &att("a"));
    assert_eq!(released, [ip("10.1.0.3")]);
    assert_eq!(s.files.len(), 1);
}

#[test]
fn a_crash_between_index_and_file_leaves_nothing_held() {
    // The index names .2 but the reservation file was never written.
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    s.index.insert(
        att("a"),
        IndexEntry {
            ips: vec![ip("10.1.0.2")],
            ..Default::default()
        },
    );
    assert_eq!(
        add(&mut s, &c, "b").unwrap(),
        ["10.1.0.2/24"],
        "the address is free"
    );
    assert_eq!(
        add(&mut s, &c, "a").unwrap(),
        ["10.1.0.3/24"],
        "no duplicate: a holds nothing"
    );
    assert_eq!(
        s.index.get(&att("a")).unwrap().ips,
        [ip("10.1.0.3")],
        "stale entry dropped"
    );
    release(&mut s, &att("a"));
    assert_eq!(
        s.files.keys().copied().collect::<Vec<_>>(),
        [ip("10.1.0.2")],
        "b keeps its address"
    );
}

#[test]
fn check_reports_the_missing_address() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    add(&mut s, &c, "a").unwrap();
    assert_eq!(check(&s, "net1", &att("a")).unwrap(), [ip("10.1.0.2")]);
    s.files.remove(&ip("10.1.0.2"));
    let e = check(&s, "net1", &att("a")).unwrap_err();
    assert_eq!(e.code(), 101);
    assert!(
        e.to_string().contains("10.1.0.2 of a/eth0 is no longer reserved"),
        "{e}"
    );
    let e = check(&s, "net1", &att("zz")).unwrap_err();
    assert!(
        e.to_string().contains("no address is reserved for zz/eth0"),
        "{e}"
    );
    s.insert_foreign(ip("10.1.0.7"), Holder::LegacyId("old".into()));
    assert_eq!(check(&s, "net1", &att("old")).unwrap(), [ip("10.1.0.7")]);
}

#[test]
fn gc_removes_what_is_not_valid() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    for id in ["a", "b", "c"] {
        add(&mut s, &c, id).unwrap();
    }
    s.insert_foreign(ip("10.1.0.100"), Holder::LegacyId("a".into()));
    s.insert_foreign(ip("10.1.0.101"), Holder::LegacyId("gone".into()));
    s.index.get_mut(&att("a")).unwrap().ips.push(ip("10.1.0.200")); // stale
    let (removed, errors) = gc(&mut s, &[att("a")]);
    assert!(errors.is_empty());
    let mut removed: Vec<String> = removed.iter().map(ToString::to_string).collect();
    removed.sort();
    assert_eq!(removed, ["10.1.0.101", "10.1.0.3", "10.1.0.4"]);
    assert_eq!(s.files.len(), 2, "a's address and its legacy file stay");
    assert_eq!(s.indexed().unwrap(), [att("a")]);
    assert_eq!(
        s.index.get(&att("a")).unwrap().ips,
        [ip("10.1.0.2")],
        "stale address pruned"
    );
}

#[test]
fn status_finds_a_full_set() {
    let c = cfg_with(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]]}),
        None,
    );
    let mut s = MemoryStore::new();
    assert!(first_full_set(&s, &c.range_sets).unwrap().is_none());
    add(&mut s, &c, "a").unwrap();
    let full = first_full_set(&s, &c.range_sets).unwrap().unwrap();
    assert_eq!(full.to_string(), "10.2.0.0/30");
}
