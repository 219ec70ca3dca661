//! Root tests against the real kernel. Each test creates its own throwaway network namespace
//! (`corral-nat-<pid>-<n>`, deleted on drop) and runs nft only inside it, through `nsenter --net=…`; nothing
//! here touches the machine's own ruleset.

// Test code: a failed setup step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Netns;
use corral_nat::Source;
use corral_nat::{AttachmentRecord, MasqEntry, NatError, NftBackend, NftCli, Owner, SpoofEntry};

fn record(container: &str, v4: &str, v6: &str, veth: &str, last: u8) -> AttachmentRecord {
    let mut r = AttachmentRecord::new(Owner::new("net1", container, "eth0"));
    r.masq = vec![
        MasqEntry {
            ip: v4.parse().unwrap(),
            subnet: "10.88.0.0/16".parse().unwrap(),
        },
        MasqEntry {
            ip: v6.parse().unwrap(),
            subnet: "fd00:88::/64".parse().unwrap(),
        },
    ];
    r.spoof = Some(SpoofEntry {
        host_ifname: veth.into(),
        mac: [0x02, 0x42, 0xac, 0x11, 0x00, last],
    });
    r
}

fn a() -> AttachmentRecord {
    record("aaaa", "10.88.0.2", "fd00:88::2", "veth0a", 2)
}

fn b() -> AttachmentRecord {
    record("bbbb", "10.88.0.3", "fd00:88::3", "veth0b", 3)
}

#[test]
fn add_puts_elements_in_the_kernel_and_del_removes_them() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    let r = a();
    m.add(&r).unwrap();
    assert!(ns.set_json("inet", "masq_src4").contains("10.88.0.2"));
    assert!(ns.set_json("inet", "masq_skip4").contains("10.88.0.0"));
    assert!(ns.set_json("inet", "masq_src6").contains("fd00:88::2"));
    assert!(ns
        .set_json("bridge", "spoof_allowed")
        .contains("02:42:ac:11:00:02"));
    m.check(&r.owner, Source::Bridge).unwrap();

    m.del(&r.owner, Source::Bridge).unwrap();
    for (family, set) in [
        ("inet", "masq_src4"),
        ("inet", "masq_skip4"),
        ("inet", "masq_src6"),
        ("inet", "masq_skip6"),
    ] {
        assert_eq!(ns.set_json(family, set), "null", "{set} empty after DEL");
    }
    assert_eq!(ns.set_json("bridge", "spoof_ports"), "null");
    assert_eq!(ns.set_json("bridge", "spoof_allowed"), "null");
    m.del(&r.owner, Source::Bridge).unwrap();
    assert!(matches!(
        m.check(&r.owner, Source::Bridge),
        Err(NatError::NoRecord { .. })
    ));
}

#[test]
fn repeated_adds_never_duplicate_rules() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.add(&a()).unwrap();
    m.add(&b()).unwrap();
    m.add(&a()).unwrap();
    let text = ns.nft(&["list", "chain", "inet", "corral", "postrouting"]);
    // Two for ipMasq, two for DNATed connections (hairpin, localhost, masqAll).
    assert_eq!(text.matches("masquerade").count(), 4, "{text}");
    let text = ns.nft(&["list", "chain", "bridge", "corral", "prerouting"]);
    assert_eq!(text.matches("drop").count(), 1, "{text}");
    m.check(&a().owner, Source::Bridge).unwrap();
    m.check(&b().owner, Source::Bridge).unwrap();
}

#[test]
fn check_names_an_element_deleted_behind_our_back() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    let r = a();
    m.add(&r).unwrap();
    ns.nft(&[
        "delete",
        "element",
        "inet",
        "corral",
        "masq_skip4",
        "{ 10.88.0.2 . 10.88.0.0/16 }",
    ]);
    let err = m.check(&r.owner, Source::Bridge).unwrap_err().to_string();
    assert!(err.contains("masq_skip4 { 10.88.0.2 . 10.88.0.0/16 }"), "{err}");
    assert!(!err.contains("masq_src4"), "{err}");
}

#[test]
fn reconcile_restores_everything_after_flush_ruleset() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.add(&a()).unwrap();
    m.add(&b()).unwrap();
    ns.nft(&["flush", "ruleset"]);
    assert!(m.check(&a().owner, Source::Bridge).is_err());
    let report = m.reconcile().unwrap();
    assert_eq!(report.records, 2);
    assert!(report.conflicts.is_empty() && report.unreadable.is_empty());
    m.check(&a().owner, Source::Bridge).unwrap();
    m.check(&b().owner, Source::Bridge).unwrap();
    assert!(ns.set_json("inet", "masq_src4").contains("10.88.0.3"));
}

#[test]
fn del_succeeds_after_flush_ruleset() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.add(&a()).unwrap();
    ns.nft(&["flush", "ruleset"]);
    m.del(&a().owner, Source::Bridge).unwrap();
    assert_eq!(ns.set_json("inet", "masq_src4"), "null");
}

#[test]
fn shared_ip_stays_until_its_last_owner_leaves() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    let first = a();
    let mut leaked = a();
    leaked.owner = Owner::new("net1", "cccc", "eth0");
    leaked.spoof = None;
    m.add(&first).unwrap();
    m.add(&leaked).unwrap();
    m.del(&first.owner, Source::Bridge).unwrap();
    assert!(ns.set_json("inet", "masq_src4").contains("10.88.0.2"));
    assert_eq!(
        ns.set_json("bridge", "spoof_ports"),
        "null",
        "the spoof entry was first's alone"
    );
    m.check(&leaked.owner, Source::Bridge).unwrap();
    m.del(&leaked.owner, Source::Bridge).unwrap();
    assert_eq!(ns.set_json("inet", "masq_src4"), "null");
}

#[test]
fn re_add_with_a_new_address_replaces_the_old_one() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.add(&a()).unwrap();
    let mut moved = a();
    moved.masq[0].ip = "10.88.0.9".parse().unwrap();
    m.add(&moved).unwrap();
    let src4 = ns.set_json("inet", "masq_src4");
    assert!(
        src4.contains("10.88.0.9") && !src4.contains("10.88.0.2"),
        "{src4}"
    );
    m.check(&moved.owner, Source::Bridge).unwrap();
}

#[test]
fn overlapping_subnet_for_the_same_ip_is_refused_with_nft_stderr() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.add(&a()).unwrap();
    let mut other = AttachmentRecord::new(Owner::new("net2", "dddd", "eth0"));
    other.masq = vec![MasqEntry {
        ip: "10.88.0.2".parse().unwrap(),
        subnet: "10.88.0.0/24".parse().unwrap(),
    }];
    let err = m.add(&other).unwrap_err();
    assert!(err.to_string().contains("File exists"), "{err}");
    assert_eq!(
        m.records().unwrap().records.len(),
        1,
        "failed ADD leaves no record"
    );
    m.check(&a().owner, Source::Bridge).unwrap();
}

#[test]
fn gc_removes_stale_attachments_from_the_kernel() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.add(&a()).unwrap();
    m.add(&b()).unwrap();
    m.gc("net1", Source::Bridge, &[("bbbb".into(), "eth0".into())])
        .unwrap();
    let src4 = ns.set_json("inet", "masq_src4");
    assert!(
        src4.contains("10.88.0.3") && !src4.contains("10.88.0.2"),
        "{src4}"
    );
    m.check(&b().owner, Source::Bridge).unwrap();
}

#[test]
fn golden_scripts_are_accepted_by_nft() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "nft") {
            continue; // fixtures/netlink holds the netlink reader's byte captures
        }
        let ns = Netns::new();
        let script = std::fs::read_to_string(&path).unwrap();
        // `<name>.elements.nft` holds element lines alone: they need `<name>.nft`'s skeleton in place first.
        if let Some(full) = path.to_str().and_then(|p| p.strip_suffix(".elements.nft")) {
            let skeleton = std::fs::read_to_string(format!("{full}.nft")).unwrap();
            NftCli::in_netns(ns.path()).apply(&skeleton).unwrap();
        }
        NftCli::in_netns(ns.path())
            .apply(&script)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn status_and_listing_work_in_a_namespace() {
    let ns = Netns::new();
    let (_dir, m) = ns.manager();
    m.status().unwrap();
    assert_eq!(
        NftCli::in_netns(ns.path()).list_table("inet", "corral").unwrap(),
        None
    );
    m.add(&a()).unwrap();
    assert_eq!(m.kernel_elements().unwrap().len(), 6);
}
