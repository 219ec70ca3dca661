//! Root tests of element removal over netlink (`NFT_MSG_DESTROYSETELEM` batches) against the real kernel, in
//! throwaway namespaces: every element kind is removed and nothing else, missing elements are fine, and the
//! manager's DEL removes over netlink alone (no nft needed) and releases its lock on return.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::Netns;
use corral_nat::element::record_elements;
use corral_nat::nfnl::socket::{list_elements, remove_elements};
use corral_nat::{
    AttachmentRecord, Element, MasqEntry, NatManager, NftCli, Owner, PortForwarding, PortMapping, Protocol,
    Set, Source, SpoofEntry, Table,
};

fn mapping(protocol: Protocol, host_ip: Option<&str>, host_port: u16, ctr: &str, port: u16) -> PortMapping {
    PortMapping {
        protocol,
        host_ip: host_ip.map(|h| h.parse().unwrap()),
        host_port,
        container_ip: ctr.parse().unwrap(),
        container_port: port,
    }
}

/// A bridge record (v4/v6 masquerade, spoof check) and a portmap record (v4/v6 maps with and without hostIP,
/// hairpin, localhost and masqAll intervals) for container number `n`: between them one element in every set.
fn attachment(n: u8) -> [AttachmentRecord; 2] {
    let owner = Owner::new("net1", format!("c{n}"), "eth0");
    let (v4, v6) = (format!("10.88.0.{n}"), format!("fd00:88::{n}"));
    let mut bridge = AttachmentRecord::new(owner.clone());
    bridge.masq = vec![
        MasqEntry {
            ip: v4.parse().unwrap(),
            subnet: "10.88.0.0/16".parse().unwrap(),
        },
        MasqEntry {
            ip: v6.parse().unwrap(),
            subnet: "fd00:88::/64".parse().unwrap(),
        },
    ];
    bridge.spoof = Some(SpoofEntry {
        host_ifname: format!("veth{n}abcdefghij"),
        mac: [0x02, 0x42, 0xac, 0x11, 0x00, n],
    });
    let mut ports = AttachmentRecord::with_source(owner, Source::Portmap);
    let port = 8000 + u16::from(n);
    ports.ports = Some(PortForwarding {
        mappings: vec![
            mapping(Protocol::Tcp, None, port, &v4, 80),
            mapping(Protocol::Udp, None, port, &v6, 80),
            mapping(Protocol::Udp, Some("192.168.50.1"), port, &v4, 53),
            mapping(Protocol::Sctp, Some("fd50::1"), port, &v6, 9),
        ],
        subnets: vec!["10.88.0.0/16".parse().unwrap(), "fd00:88::/64".parse().unwrap()],
        snat: true,
        masq_all: true,
    });
    [bridge, ports]
}

fn elements_of(records: &[AttachmentRecord]) -> BTreeSet<Element> {
    records.iter().flat_map(record_elements).collect()
}

fn kernel(ns: &Netns) -> BTreeSet<Element> {
    let mut out = BTreeSet::new();
    for table in [Table::Inet, Table::Bridge] {
        let listed = list_elements(Some(&ns.path()), table).unwrap().unwrap();
        out.extend(listed.into_iter().map(|(e, _)| e));
    }
    out
}

/// Two attachments added with nft (through the manager), one per container.
fn populated() -> (
    Netns,
    tempfile::TempDir,
    [AttachmentRecord; 2],
    [AttachmentRecord; 2],
) {
    let ns = Netns::new();
    let (dir, m) = ns.manager();
    let (gone, kept) = (attachment(2), attachment(3));
    for r in gone.iter().chain(&kept) {
        m.add(r).unwrap();
    }
    assert_eq!(kernel(&ns), &elements_of(&gone) | &elements_of(&kept));
    (ns, dir, gone, kept)
}

#[test]
fn netlink_removal_removes_every_kind_and_nothing_else() {
    let (ns, _dir, gone, kept) = populated();
    let removing = elements_of(&gone);
    let sets: BTreeSet<Set> = removing.iter().map(Element::set).collect();
    assert_eq!(sets.len(), Set::ALL.len(), "one element in every set");
    let removing: Vec<Element> = removing.into_iter().collect();
    remove_elements(Some(&ns.path()), &removing).unwrap();
    assert_eq!(kernel(&ns), elements_of(&kept));

    // Gone already: removing again is fine and changes nothing; so is a mix of present and absent elements.
    remove_elements(Some(&ns.path()), &removing).unwrap();
    assert_eq!(kernel(&ns), elements_of(&kept));
    let mut mixed = removing.clone();
    let spoof_kept = elements_of(&kept)
        .into_iter()
        .find(|e| e.set() == Set::SpoofAllowed)
        .unwrap();
    mixed.push(spoof_kept.clone());
    remove_elements(Some(&ns.path()), &mixed).unwrap();
    let mut expected = elements_of(&kept);
    expected.remove(&spoof_kept);
    assert_eq!(kernel(&ns), expected);
}

#[test]
fn a_missing_table_fails_naming_it_and_removes_nothing() {
    let (ns, _dir, gone, kept) = populated();
    ns.nft(&["delete", "table", "bridge", "corral"]);
    let removing: Vec<Element> = elements_of(&gone).into_iter().collect();
    let err = remove_elements(Some(&ns.path()), &removing).unwrap_err();
    assert!(err.to_string().contains("spoof_"), "{err}");
    assert!(err.to_string().contains("No such file"), "{err}");
    // One transaction: the inet elements of the refused batch are all still there.
    let inet_gone = elements_of(&gone)
        .into_iter()
        .filter(|e| e.set().table() == Table::Inet);
    let now: BTreeSet<Element> = list_elements(Some(&ns.path()), Table::Inet)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    for element in inet_gone {
        assert!(now.contains(&element), "{element} was removed by a refused batch");
    }
    assert!(elements_of(&kept)
        .iter()
        .filter(|e| e.set().table() == Table::Inet)
        .all(|e| now.contains(e)));
}

#[test]
fn manager_del_removes_over_netlink_without_nft_and_unlocks() {
    let (ns, dir, gone, kept) = populated();
    // No nft binary: only the netlink path (skeleton check + removal) can make these DELs succeed.
    let m = NatManager::new(
        dir.path(),
        NftCli {
            program: "/nonexistent/corral-test-nft".into(),
            ..NftCli::in_netns(ns.path())
        },
    );
    for r in &gone {
        assert!(m.del(&r.owner, r.source).unwrap().is_some());
        // The store lock is free as soon as DEL returns, although the socket-release child may still run.
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("nat/lock"))
            .unwrap();
        let flock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock);
        assert!(flock.is_ok(), "the NAT lock is still held after DEL returned");
    }
    assert_eq!(kernel(&ns), elements_of(&kept));
    assert_eq!(m.records().unwrap().records.len(), 2);

    // With the skeleton damaged the DEL needs nft (the full script), so it fails here and keeps the record.
    ns.nft(&["flush", "chain", "inet", "corral", "postrouting"]);
    let err = m.del(&kept[0].owner, kept[0].source).unwrap_err();
    assert!(err.to_string().contains("corral-test-nft"), "{err}");
    assert_eq!(m.records().unwrap().records.len(), 2);
}
