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
    assert!(first_full_set(&s, &c.range_sets, &AddContext::default())
        .unwrap()
        .is_none());
    add(&mut s, &c, "a").unwrap();
    let full = first_full_set(&s, &c.range_sets, &AddContext::default())
        .unwrap()
        .unwrap();
    assert_eq!(full.to_string(), "10.2.0.0/30");
}

/// A probe for the memory-store tests: `/run/netns/live*` is namespace 7, `/run/netns/moved*` namespace 8,
/// `/run/netns/file*` a plain file, `/run/netns/eacces*` unreadable, anything else gone.
fn probe(path: &str) -> NetnsNow {
    let name = path.trim_start_matches("/run/netns/");
    if name.starts_with("live") {
        NetnsNow::Namespace(7)
    } else if name.starts_with("moved") {
        NetnsNow::Namespace(8)
    } else if name.starts_with("file") {
        NetnsNow::NotNamespace
    } else if name.starts_with("eacces") {
        NetnsNow::Unknown
    } else {
        NetnsNow::Gone
    }
}

fn ctx(boot: &str, netns: &str) -> AddContext {
    AddContext {
        boot_id: boot.into(),
        netns: format!("/run/netns/{netns}"),
        netns_ino: (probe(&format!("/run/netns/{netns}")) == NetnsNow::Namespace(7)).then_some(7),
        probe: Some(probe),
    }
}

fn add_in(s: &mut MemoryStore, c: &IpamConfig, id: &str, x: &AddContext) -> Result<Vec<String>, IpamError> {
    allocate(s, c, &att(id), x).map(|ips| ips.iter().map(|c| c.address.to_string()).collect())
}

#[test]
fn staleness_needs_evidence() {
    let entry = |boot: &str, netns: &str, ino: Option<u64>| IndexEntry {
        ips: vec![],
        boot_id: boot.into(),
        netns: netns.into(),
        netns_ino: ino,
    };
    let now = ctx("b1", "live0");
    assert_eq!(staleness(&entry("b1", "/run/netns/live1", Some(7)), &now), None);
    assert_eq!(
        staleness(&entry("b0", "/run/netns/live1", Some(7)), &now),
        Some("recorded in another boot")
    );
    assert_eq!(
        staleness(&entry("b1", "/run/netns/gone", Some(7)), &now),
        Some("its netns no longer exists")
    );
    assert_eq!(
        staleness(&entry("b1", "/run/netns/moved", Some(7)), &now),
        Some("its netns path now names another namespace")
    );
    assert_eq!(
        staleness(&entry("b1", "/run/netns/file", Some(7)), &now),
        Some("its netns path no longer names a namespace")
    );
    // Nothing to tell by: no inode recorded (the netns was not a namespace at ADD, or an older index), an
    // unreadable path, no boot id on either side, or no probe.
    assert_eq!(staleness(&entry("b1", "/run/netns/gone", None), &now), None);
    assert_eq!(staleness(&entry("b1", "/run/netns/eacces", Some(7)), &now), None);
    assert_eq!(staleness(&entry("", "/run/netns/live1", Some(7)), &now), None);
    assert_eq!(staleness(&entry("b0", "", None), &ctx("", "live0")), None);
    assert_eq!(
        staleness(&entry("b1", "/run/netns/gone", Some(7)), &AddContext::default()),
        None
    );
}

#[test]
fn a_full_pool_of_stale_attachments_is_reclaimed_by_the_next_add() {
    let c = cfg("10.1.0.0/29"); // .2 .. .6
    let mut s = MemoryStore::new();
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        add_in(&mut s, &c, id, &ctx("boot1", &format!("live{i}"))).unwrap();
    }
    let e = add_in(&mut s, &c, "f", &ctx("boot1", "live9")).unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
    assert!(
        first_full_set(&s, &c.range_sets, &ctx("boot1", "live9"))
            .unwrap()
            .is_some(),
        "full while every holder is alive"
    );
    // A reboot: every earlier entry is from another boot.
    let after = ctx("boot2", "live9");
    assert!(
        first_full_set(&s, &c.range_sets, &after).unwrap().is_none(),
        "STATUS counts reclaimable addresses as room"
    );
    // Round-robin resumes after the last (.6), wraps to .2: a's address, reclaimed.
    assert_eq!(add_in(&mut s, &c, "f", &after).unwrap(), ["10.1.0.2/29"]);
    assert_eq!(s.files.get(&ip("10.1.0.2")), Some(&Holder::Attachment(att("f"))));
    assert!(
        !s.index.contains_key(&att("a")),
        "the old owner's index entry is gone"
    );
    assert_eq!(s.index.get(&att("f")).unwrap().boot_id, "boot2");
    // The others stay until an ADD needs them.
    assert_eq!(s.files.len(), 5);
    assert_eq!(add_in(&mut s, &c, "g", &after).unwrap(), ["10.1.0.3/29"]);
    assert!(!s.index.contains_key(&att("b")));
}

#[test]
fn requested_address_of_a_stale_attachment_is_reclaimed_but_not_a_live_one() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    add_in(&mut s, &c, "a", &ctx("b1", "live0")).unwrap(); // .2
    add_in(&mut s, &c, "b", &ctx("b1", "gone-later")).unwrap(); // .3, netns gone (no inode recorded)
    let want = cfg_with(json!({"subnet": "10.1.0.0/24"}), Some("10.1.0.2"));
    let e = add_in(&mut s, &want, "x", &ctx("b1", "live1")).unwrap_err();
    assert!(matches!(e, IpamError::Unavailable { .. }), "{e}");
    // b's netns was not a namespace at ADD (no inode recorded): its missing path proves nothing.
    let want3 = cfg_with(json!({"subnet": "10.1.0.0/24"}), Some("10.1.0.3"));
    let e = add_in(&mut s, &want3, "x", &ctx("b1", "live1")).unwrap_err();
    assert!(matches!(e, IpamError::Unavailable { .. }), "{e}");
    // a's namespace is gone now (its path names another one).
    s.index.get_mut(&att("a")).unwrap().netns = "/run/netns/moved0".into();
    assert_eq!(
        add_in(&mut s, &want, "x", &ctx("b1", "live1")).unwrap(),
        ["10.1.0.2/24"]
    );
    assert!(!s.index.contains_key(&att("a")));
}

#[test]
fn reservations_without_an_index_are_never_reclaimed() {
    let c = cfg("10.1.0.0/30"); // only .2
    let mut s = MemoryStore::new();
    s.insert_foreign(ip("10.1.0.2"), Holder::Attachment(att("ref")));
    let e = add_in(&mut s, &c, "x", &ctx("boot2", "live0")).unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
    s.files.clear();
    s.insert_foreign(ip("10.1.0.2"), Holder::LegacyId("old".into()));
    assert!(add_in(&mut s, &c, "x", &ctx("boot2", "live0")).is_err());
    // An index that does not list the address does not vouch for it either.
    s.files.clear();
    s.insert_foreign(ip("10.1.0.2"), Holder::Attachment(att("y")));
    s.index.insert(
        att("y"),
        IndexEntry {
            ips: vec![ip("10.9.0.9")],
            boot_id: "boot1".into(),
            ..Default::default()
        },
    );
    assert!(add_in(&mut s, &c, "x", &ctx("boot2", "live0")).is_err());
}

#[test]
fn reclaiming_releases_every_address_of_the_stale_attachment() {
    let c = cfg_with(
        json!({"ranges": [[{"subnet": "10.1.0.0/30"}], [{"subnet": "fd00::/120"}]]}),
        None,
    );
    let mut s = MemoryStore::new();
    add_in(&mut s, &c, "a", &ctx("b1", "live0")).unwrap();
    assert_eq!(
        add_in(&mut s, &c, "b", &ctx("b2", "live1")).unwrap(),
        ["10.1.0.2/30", "fd00::3/120"],
        "a's v4 reclaimed (the only one); v6 goes on round-robin"
    );
    assert!(!s.index.contains_key(&att("a")));
    assert!(
        !s.files.contains_key(&ip("fd00::2")),
        "a's v6 was released with its v4"
    );
    assert_eq!(s.files.len(), 2);
}

#[test]
fn a_second_add_of_a_stale_attachment_is_not_a_duplicate() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    add_in(&mut s, &c, "a", &ctx("b1", "live0")).unwrap();
    // Same boot, netns alive: a duplicate.
    let e = add_in(&mut s, &c, "a", &ctx("b1", "live0")).unwrap_err();
    assert!(matches!(e, IpamError::Duplicate { .. }), "{e}");
    // After a reboot the runtime ADDs the same attachment again without a DEL.
    assert_eq!(
        add_in(&mut s, &c, "a", &ctx("b2", "live0")).unwrap(),
        ["10.1.0.3/24"]
    );
    assert_eq!(s.files.len(), 1, "the old address was released");
    assert_eq!(s.index.get(&att("a")).unwrap().ips, [ip("10.1.0.3")]);
}

#[test]
fn gc_follows_the_valid_list_whatever_the_boot() {
    let c = cfg("10.1.0.0/24");
    let mut s = MemoryStore::new();
    for id in ["a", "b", "c"] {
        add_in(&mut s, &c, id, &ctx("b1", "live0")).unwrap();
    }
    // After a reboot the runtime still lists `a` (it will re-ADD it): kept, with its entry as written.
    let (removed, errors) = gc(&mut s, &[att("a")]);
    assert!(errors.is_empty());
    assert_eq!(removed.len(), 2);
    assert_eq!(s.indexed().unwrap(), [att("a")]);
    assert_eq!(s.index.get(&att("a")).unwrap().boot_id, "b1");
    let (removed, errors) = gc(&mut s, &[]);
    assert!(errors.is_empty());
    assert_eq!(removed, [ip("10.1.0.2")]);
    assert!(s.files.is_empty() && s.index.is_empty());
}
