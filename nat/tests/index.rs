//! Root tests of ADD and DEL over the ownership index, against the real kernel in throwaway namespaces:
//! host-port conflicts (code 102), stale owners, shared elements, and the same after the index directory
//! was deleted (rebuilt from the records on the next verb).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Netns;
use corral_nat::index::INDEX_DIR;
use corral_nat::{AttachmentRecord, MasqEntry, Owner, PortForwarding, PortMapping, Protocol, Source};

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

fn drop_index(dir: &tempfile::TempDir) {
    std::fs::remove_dir_all(dir.path().join("nat").join(INDEX_DIR)).unwrap();
}

#[test]
fn conflicts_are_102_and_stale_owners_are_replaced_with_or_without_the_index() {
    let ns = Netns::new();
    let (dir, m) = ns.manager();
    let live = ns.path().display().to_string();
    m.add(&ports("aaaa", "10.88.0.2", None, &live)).unwrap();
    for round in ["index present", "index deleted"] {
        if round == "index deleted" {
            drop_index(&dir);
        }
        let err = m
            .add(&ports("bbbb", "10.88.0.3", Some("127.0.0.1"), &live))
            .unwrap_err();
        assert_eq!(err.code(), 102, "{round}: {err}");
        assert!(err.to_string().contains("net1/aaaa/eth0"), "{round}: {err}");
    }
    m.check(&Owner::new("net1", "aaaa", "eth0"), Source::Portmap)
        .unwrap();

    // The owner's netns vanishes: the next claimant takes the port over in one transaction.
    let dead = ports("cccc", "10.88.0.4", None, "/nonexistent/corral-netns");
    m.del(&Owner::new("net1", "aaaa", "eth0"), Source::Portmap)
        .unwrap();
    m.add(&dead).unwrap();
    drop_index(&dir);
    let new = ports("dddd", "10.88.0.5", None, &live);
    m.add(&new).unwrap();
    let map = ns.nft(&["list", "map", "inet", "corral", "hostports4"]);
    assert!(
        map.contains("10.88.0.5 . 80") && !map.contains("10.88.0.4"),
        "{map}"
    );
    let dnat_masq = ns.nft(&["list", "set", "inet", "corral", "dnat_masq4"]);
    assert!(!dnat_masq.contains("10.88.0.4"), "{dnat_masq}");
    let owners: Vec<String> = m
        .records()
        .unwrap()
        .records
        .iter()
        .map(|r| r.owner.to_string())
        .collect();
    assert_eq!(owners, ["net1/dddd/eth0"]);
    m.check(&new.owner, Source::Portmap).unwrap();
}

#[test]
fn shared_elements_stay_until_their_last_owner_leaves_after_an_index_loss() {
    let ns = Netns::new();
    let (dir, m) = ns.manager();
    let mut a = AttachmentRecord::new(Owner::new("net1", "aaaa", "eth0"));
    a.masq = vec![MasqEntry {
        ip: "10.88.0.2".parse().unwrap(),
        subnet: "10.88.0.0/16".parse().unwrap(),
    }];
    let mut b = a.clone();
    b.owner = Owner::new("net2", "bbbb", "eth0");
    m.add(&a).unwrap();
    m.add(&b).unwrap();
    drop_index(&dir);
    m.del(&a.owner, Source::Bridge).unwrap();
    assert!(ns
        .nft(&["list", "set", "inet", "corral", "masq_src4"])
        .contains("10.88.0.2"));
    m.check(&b.owner, Source::Bridge).unwrap();
    m.del(&b.owner, Source::Bridge).unwrap();
    assert!(!ns
        .nft(&["list", "set", "inet", "corral", "masq_src4"])
        .contains("10.88.0.2"));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("nat").join(INDEX_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["version"], "every index line left with its record");
}
