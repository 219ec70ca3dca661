//! Root tests of the netlink element reader against the real kernel, in throwaway namespaces: it agrees with
//! `nft -j` on every element kind, and the byte fixtures the parser's unit tests use are captured here
//! (`CORRAL_BLESS=1` rewrites them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Netns;
use corral_nat::nfnl::socket::{capture_dump, list_elements};
use corral_nat::{
    AttachmentRecord, ElementReader, MasqEntry, NftBackend, NftCli, Owner, PortForwarding, PortMapping,
    Protocol, Set, Source, SpoofEntry, Table,
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

/// Every element kind: v4/v6 masquerade with spoof check; v4/v6 maps with and without hostIP; hairpin,
/// localhost and masqAll `dnat_masq` intervals.
fn records() -> Vec<AttachmentRecord> {
    let mut bridge = AttachmentRecord::new(Owner::new("net1", "aaaa", "eth0"));
    bridge.masq = vec![
        MasqEntry {
            ip: "10.88.0.2".parse().unwrap(),
            subnet: "10.88.0.0/16".parse().unwrap(),
        },
        MasqEntry {
            ip: "fd00:88::2".parse().unwrap(),
            subnet: "fd00:88::/64".parse().unwrap(),
        },
    ];
    bridge.spoof = Some(SpoofEntry {
        host_ifname: "veth0a".into(),
        mac: [0x02, 0x42, 0xac, 0x11, 0x00, 0x02],
    });
    let mut web = AttachmentRecord::with_source(Owner::new("net1", "aaaa", "eth0"), Source::Portmap);
    web.ports = Some(PortForwarding {
        mappings: vec![
            mapping(Protocol::Tcp, None, 8080, "10.88.0.2", 80),
            mapping(Protocol::Tcp, None, 8080, "fd00:88::2", 80),
            mapping(Protocol::Udp, Some("192.168.50.1"), 5353, "10.88.0.2", 53),
            mapping(Protocol::Sctp, Some("fd50::1"), 9999, "fd00:88::2", 9),
        ],
        subnets: vec!["10.88.0.0/16".parse().unwrap(), "fd00:88::/64".parse().unwrap()],
        snat: true,
        masq_all: false,
    });
    let mut all = AttachmentRecord::with_source(Owner::new("net2", "bbbb", "eth1"), Source::Portmap);
    all.ports = Some(PortForwarding {
        mappings: vec![
            mapping(Protocol::Udp, None, 53, "10.99.0.3", 5353),
            mapping(Protocol::Tcp, None, 443, "fd00:99::3", 8443),
        ],
        subnets: vec![],
        snat: true,
        masq_all: true,
    });
    vec![bridge, web, all]
}

fn sorted(v: Vec<(corral_nat::Element, Option<corral_nat::Counters>)>) -> Vec<String> {
    let mut out: Vec<String> = v.into_iter().map(|(e, c)| format!("{e} {c:?}")).collect();
    out.sort();
    out
}

fn populated() -> (Netns, tempfile::TempDir) {
    let ns = Netns::new();
    let (dir, m) = ns.manager();
    for r in records() {
        m.add(&r).unwrap();
    }
    // Counters with values, and a bridge spoof element with a name of the full 15 bytes.
    ns.nft(&[
        "add",
        "element",
        "inet",
        "corral",
        "hostports4",
        "{ tcp . 7000 counter packets 5 bytes 300 comment \"by hand\" : 10.88.0.9 . 70 }",
    ]);
    ns.nft(&[
        "add",
        "element",
        "bridge",
        "corral",
        "spoof_ports",
        "{ \"veth0123456789a\" }",
    ]);
    (ns, dir)
}

#[test]
fn netlink_and_nft_json_agree_on_every_element_kind() {
    let (ns, _dir) = populated();
    let json = NftCli {
        reader: ElementReader::NftJson,
        ..NftCli::in_netns(ns.path())
    };
    for table in [Table::Inet, Table::Bridge] {
        let from_netlink = list_elements(Some(&ns.path()), table).unwrap().unwrap();
        let from_json = json.list_elements(table).unwrap().unwrap();
        assert!(!from_netlink.is_empty());
        assert_eq!(sorted(from_netlink), sorted(from_json), "{table:?}");
    }
    let inet = sorted(list_elements(Some(&ns.path()), Table::Inet).unwrap().unwrap());
    assert!(
        inet.iter()
            .any(|e| e.contains("tcp . 7000 : 10.88.0.9 . 70 }") && e.contains("packets: 5, bytes: 300")),
        "{inet:#?}"
    );
    for kind in [
        "hostports6",
        "hostip_ports6",
        "dnat_masq6 { ::/0 . fd00:99::3",
        "masq_skip6",
    ] {
        assert!(
            inet.iter().any(|e| e.contains(kind)),
            "{kind} missing from {inet:#?}"
        );
    }
}

#[test]
fn missing_table_is_none_and_missing_sets_are_empty() {
    let ns = Netns::new();
    assert_eq!(list_elements(Some(&ns.path()), Table::Inet).unwrap(), None);
    ns.nft(&["add", "table", "inet", "corral"]);
    assert_eq!(
        list_elements(Some(&ns.path()), Table::Inet).unwrap(),
        Some(vec![])
    );
    assert_eq!(list_elements(Some(&ns.path()), Table::Bridge).unwrap(), None);
}

/// Captures one dump per set into `tests/fixtures/netlink/<set>.bin` with `CORRAL_BLESS=1`; otherwise checks
/// that the stored fixtures still decode to what the kernel holds now.
#[test]
fn captured_fixtures_match_the_kernel() {
    let (ns, _dir) = populated();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netlink");
    for set in Set::ALL {
        let live = capture_dump(Some(&ns.path()), set).unwrap();
        let path = dir.join(format!("{}.bin", set.name()));
        if std::env::var_os("CORRAL_BLESS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &live).unwrap();
        }
        let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(decoded(set, &live), decoded(set, &stored), "{}", set.name());
    }
}

fn decoded(set: Set, bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for reply in corral_nat::nfnl::parse_datagram(bytes).unwrap() {
        if let corral_nat::nfnl::Reply::Elements { elements, .. } = reply {
            for raw in elements {
                let e = corral_nat::nfnl::decode::decode(set, &raw);
                out.push(format!("{e:?} {:?}", raw.counters));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn nat_manager_lists_ports_through_netlink() {
    let (ns, dir) = populated();
    let m = corral_nat::NatManager::new(dir.path(), NftCli::in_netns(ns.path()));
    let listing = m.list_ports().unwrap();
    assert!(listing.table_present);
    let hand = listing.entries.iter().find(|e| e.host_port == 7000).unwrap();
    assert_eq!(hand.state, corral_nat::EntryState::NotRecorded);
    assert_eq!(hand.counters.map(|c| c.packets), Some(5));
    assert!(listing
        .entries
        .iter()
        .any(|e| e.host_port == 9999 && e.state == corral_nat::EntryState::Active));
}
