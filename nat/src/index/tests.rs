//! Unit tests of the ownership index, and of the store and manager over it (fake backend, no root).

use super::*;
use crate::backend::testing::FakeBackend;
use crate::manager::NatManager;
use crate::model::{MasqEntry, PortForwarding, PortMapping, Protocol};
use crate::store::RecordStore;

fn ports(container: &str, ip: &str, host_ip: Option<&str>, netns: &str) -> AttachmentRecord {
    let mut r = AttachmentRecord::with_source(Owner::new("net1", container, "eth0"), Source::Portmap);
    r.ports = Some(PortForwarding {
        mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
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

fn masq(container: &str, ip: &str) -> AttachmentRecord {
    let mut r = AttachmentRecord::new(Owner::new("net1", container, "eth0"));
    r.masq = vec![MasqEntry {
        ip: ip.parse().unwrap(),
        subnet: "10.88.0.0/16".parse().unwrap(),
    }];
    r
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn wildcard_and_specific_host_ports_share_a_slot_per_family() {
    let live = "/proc/self/ns/net";
    let any = record_slots(&ports("a", "10.88.0.2", None, live));
    let specific = record_slots(&ports("b", "10.88.0.3", Some("192.168.1.1"), live));
    assert!(any.contains("port4-tcp-8080") && specific.contains("port4-tcp-8080"));
    let v6 = record_slots(&ports("c", "fd00::3", None, live));
    assert!(v6.contains("port6-tcp-8080") && !v6.contains("port4-tcp-8080"));
    assert_eq!(
        record_slots(&masq("a", "10.88.0.2")),
        BTreeSet::from([
            "masq_skip4-10.88.0.2".to_owned(),
            "masq_src4-10.88.0.2".to_owned()
        ])
    );
}

#[test]
fn shared_slots_keep_every_claimant_until_the_last_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::new(dir.path());
    let (a, b) = (masq("a", "10.88.0.2"), masq("b", "10.88.0.2"));
    for r in [&a, &b, &a] {
        index.insert(&record_slots(r), &r.owner, r.source).unwrap();
    }
    let both = index.claimants("masq_src4-10.88.0.2").unwrap();
    assert_eq!(
        both,
        [
            (a.owner.clone(), Source::Bridge),
            (b.owner.clone(), Source::Bridge)
        ]
    );
    index.remove(&record_slots(&a), &a.owner, a.source).unwrap();
    assert_eq!(
        index.claimants("masq_src4-10.88.0.2").unwrap(),
        [(b.owner.clone(), Source::Bridge)]
    );
    index.remove(&record_slots(&b), &b.owner, b.source).unwrap();
    index.remove(&record_slots(&b), &b.owner, b.source).unwrap();
    assert!(index.claimants("masq_src4-10.88.0.2").unwrap().is_empty());
    assert!(
        files(index.dir()).is_empty(),
        "empty slots are deleted: {:?}",
        files(index.dir())
    );
}

#[test]
fn rebuild_matches_incremental_updates_and_names_its_boot() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::new(dir.path());
    let records = [
        masq("a", "10.88.0.2"),
        masq("b", "10.88.0.2"),
        ports("c", "10.88.0.4", None, "/x"),
    ];
    for r in &records {
        index.insert(&record_slots(r), &r.owner, r.source).unwrap();
    }
    let incremental: Vec<(String, String)> = files(index.dir())
        .into_iter()
        .map(|f| (f.clone(), fs::read_to_string(index.dir().join(f)).unwrap()))
        .collect();
    assert!(!index.is_current(Some("boot-1")), "no version file yet");
    index.rebuild(&records, Some("boot-1")).unwrap();
    assert!(index.is_current(Some("boot-1")));
    assert!(!index.is_current(Some("boot-2")), "another boot");
    let rebuilt: Vec<(String, String)> = files(index.dir())
        .into_iter()
        .filter(|f| f != "version")
        .map(|f| (f.clone(), fs::read_to_string(index.dir().join(f)).unwrap()))
        .collect();
    assert_eq!(rebuilt, incremental);
    assert!(!dir.path().join(".index.new").exists() && !dir.path().join(".index.old").exists());
}

#[test]
fn unparsable_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::new(dir.path());
    fs::create_dir_all(index.dir()).unwrap();
    fs::write(
        index.dir().join("masq_src4-10.0.0.1"),
        "garbage\nbridge:n:c:eth0\nportmap:../x:c:eth0\n",
    )
    .unwrap();
    assert_eq!(
        index.claimants("masq_src4-10.0.0.1").unwrap(),
        [(Owner::new("n", "c", "eth0"), Source::Bridge)]
    );
}

#[test]
fn the_store_keeps_the_index_in_step_and_drops_lines_no_record_backs() {
    let dir = tempfile::tempdir().unwrap();
    let store = RecordStore::new(dir.path());
    let lock = store.lock().unwrap();
    let a = masq("a", "10.88.0.2");
    store.write(&lock, &a).unwrap();
    let slots = record_slots(&a);
    assert_eq!(store.claimants(&lock, &slots).unwrap(), std::slice::from_ref(&a));
    // A re-write with a new address moves the record's lines.
    let moved = masq("a", "10.88.0.9");
    store.write(&lock, &moved).unwrap();
    assert!(store.claimants(&lock, &slots).unwrap().is_empty());
    assert_eq!(
        store.claimants(&lock, &record_slots(&moved)).unwrap(),
        std::slice::from_ref(&moved)
    );
    // A line left by a crash between index and record (the record lacks that slot) is dropped on read.
    let index = store.index(&lock).unwrap();
    index.insert(&slots, &moved.owner, moved.source).unwrap();
    let ghost = Owner::new("net1", "ghost", "eth0");
    index.insert(&slots, &ghost, Source::Bridge).unwrap();
    assert!(store.claimants(&lock, &slots).unwrap().is_empty());
    assert!(
        index.claimants("masq_src4-10.88.0.2").unwrap().is_empty(),
        "phantom lines dropped"
    );
    store.remove(&lock, &moved.owner, moved.source).unwrap();
    assert_eq!(files(index.dir()), ["version"]);
}

#[test]
fn a_missing_or_stale_index_is_rebuilt_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = RecordStore::new(dir.path());
    let a = masq("a", "10.88.0.2");
    store.write(&store.lock().unwrap(), &a).unwrap();
    let index_dir = dir.path().join("nat").join(INDEX_DIR);
    for damage in ["delete", "old boot", "old format"] {
        match damage {
            "delete" => fs::remove_dir_all(&index_dir).unwrap(),
            "old boot" => fs::write(index_dir.join("version"), version_text(Some("other-boot"))).unwrap(),
            _ => fs::write(index_dir.join("version"), "corral-nat-index 1\n").unwrap(),
        }
        fs::remove_file(index_dir.join("masq_src4-10.88.0.2")).ok();
        let lock = store.lock().unwrap();
        assert_eq!(
            store.claimants(&lock, &record_slots(&a)).unwrap(),
            std::slice::from_ref(&a),
            "{damage}"
        );
    }
    // The record listing never mistakes the index for a network.
    assert_eq!(store.list(&store.lock().unwrap(), None).unwrap().records, [a]);
}

fn manager() -> (tempfile::TempDir, FakeBackend, NatManager<FakeBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new();
    let m = NatManager::new(dir.path(), fake.clone());
    (dir, fake, m)
}

#[test]
fn conflicts_and_stale_owners_work_after_the_index_is_deleted() {
    let (dir, fake, m) = manager();
    let index_dir = dir.path().join("nat").join(INDEX_DIR);
    m.add(&ports("live", "10.88.0.2", None, "/proc/self/ns/net"))
        .unwrap();
    m.add(&ports(
        "dead",
        "10.88.0.3",
        Some("192.168.1.1"),
        "/nonexistent/corral-netns",
    ))
    .unwrap_err();
    fs::remove_dir_all(&index_dir).unwrap();
    let err = m
        .add(&ports(
            "late",
            "10.88.0.4",
            Some("192.168.1.1"),
            "/proc/self/ns/net",
        ))
        .unwrap_err();
    assert_eq!(err.code(), 102, "{err}");
    assert!(err.to_string().contains("net1/live/eth0"), "{err}");

    // A stale owner found through the index is replaced in the same transaction.
    let (_dir2, fake2, m2) = manager();
    m2.add(&ports("dead", "10.88.0.3", None, "/nonexistent/corral-netns"))
        .unwrap();
    let new = ports("new", "10.88.0.5", Some("192.168.1.1"), "/proc/self/ns/net");
    m2.add(&new).unwrap();
    let script = fake2.scripts().pop().unwrap();
    assert!(
        script.contains("delete element inet corral hostports4 { tcp . 8080 }"),
        "{script}"
    );
    let owners: Vec<String> = m2
        .records()
        .unwrap()
        .records
        .iter()
        .map(|r| r.owner.to_string())
        .collect();
    assert_eq!(owners, ["net1/new/eth0"]);
    assert_eq!(fake.scripts().len(), 1, "the losers applied nothing");
}

#[test]
fn del_keeps_a_shared_element_found_through_the_index() {
    let (dir, fake, m) = manager();
    let (a, b) = (masq("a", "10.88.0.2"), masq("b", "10.88.0.2"));
    m.add(&a).unwrap();
    m.add(&b).unwrap();
    fs::remove_dir_all(dir.path().join("nat").join(INDEX_DIR)).unwrap();
    m.del(&a.owner, Source::Bridge).unwrap();
    assert_eq!(fake.scripts().len(), 2, "B still claims everything A had");
    m.del(&b.owner, Source::Bridge).unwrap();
    assert!(fake.scripts()[2].contains("delete element inet corral masq_src4 { 10.88.0.2 }"));
    assert_eq!(files(&dir.path().join("nat").join(INDEX_DIR)), ["version"]);
}

#[test]
fn reconcile_rebuilds_the_index() {
    let (dir, _fake, m) = manager();
    let a = masq("a", "10.88.0.2");
    m.add(&a).unwrap();
    let index = Index::new(&dir.path().join("nat"));
    fs::write(index.dir().join("masq_src4-10.88.0.2"), "").unwrap();
    m.reconcile().unwrap();
    assert_eq!(
        index.claimants("masq_src4-10.88.0.2").unwrap(),
        [(a.owner, Source::Bridge)]
    );
}
