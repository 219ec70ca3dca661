//! Root tests of the skeleton check and the elements-only fast path against the real kernel, in throwaway
//! namespaces (nft runs only inside them): an intact skeleton is recognised, every kind of damage is seen and
//! healed by the next ADD, elements-only transactions really add and remove elements, and the byte fixtures
//! of the parser's unit tests are captured here (`CORRAL_BLESS=1` rewrites them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Mutex;

use common::Netns;
use corral_nat::nfnl::socket::{capture_objects, skeleton};
use corral_nat::nfnl::Dump;
use corral_nat::plan::skeleton_damage;
use corral_nat::{
    AttachmentRecord, MasqEntry, NatError, NatManager, NftBackend, NftCli, Owner, PortForwarding,
    PortMapping, Protocol, Source, SpoofEntry, Table,
};
use serde_json::Value;

/// The real backend, recording every script it applies.
struct Recording {
    cli: NftCli,
    scripts: Mutex<Vec<String>>,
}

impl Recording {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.scripts.lock().unwrap())
    }
}

impl NftBackend for Recording {
    fn apply(&self, script: &str) -> Result<(), NatError> {
        self.scripts.lock().unwrap().push(script.to_owned());
        self.cli.apply(script)
    }
    fn list_table(&self, family: &str, table: &str) -> Result<Option<Value>, NatError> {
        self.cli.list_table(family, table)
    }
    fn probe(&self) -> Result<(), NatError> {
        self.cli.probe()
    }
    fn skeleton_intact(&self, table: Table) -> Result<bool, NatError> {
        self.cli.skeleton_intact(table)
    }
}

fn manager(ns: &Netns) -> (tempfile::TempDir, NatManager<Recording>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Recording {
        cli: NftCli::in_netns(ns.path()),
        scripts: Mutex::new(Vec::new()),
    };
    let m = NatManager::new(dir.path(), backend);
    (dir, m)
}

/// A bridge attachment with v4 masquerade and the spoof check (both tables).
fn bridge(container: &str, last: u8) -> AttachmentRecord {
    let mut r = AttachmentRecord::new(Owner::new("net1", container, "eth0"));
    r.masq = vec![MasqEntry {
        ip: format!("10.88.0.{last}").parse().unwrap(),
        subnet: "10.88.0.0/16".parse().unwrap(),
    }];
    r.spoof = Some(SpoofEntry {
        host_ifname: format!("veth{container}"),
        mac: [0x02, 0x42, 0xac, 0x11, 0x00, last],
    });
    r
}

/// A portmap attachment forwarding host port 8000+`last` to the container.
fn ports(container: &str, last: u8) -> AttachmentRecord {
    let mut r = AttachmentRecord::with_source(Owner::new("net1", container, "eth0"), Source::Portmap);
    r.ports = Some(PortForwarding {
        mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 8000 + u16::from(last),
            container_ip: format!("10.88.0.{last}").parse().unwrap(),
            container_port: 80,
        }],
        subnets: vec!["10.88.0.0/16".parse().unwrap()],
        snat: true,
        masq_all: false,
    });
    r
}

fn intact(ns: &Netns, table: Table) -> bool {
    NftCli::in_netns(ns.path()).skeleton_intact(table).unwrap()
}

fn damage(ns: &Netns, table: Table) -> Vec<String> {
    let observed = skeleton(Some(&ns.path()), table).unwrap();
    skeleton_damage(table, observed.as_ref())
}

fn rule_count(ns: &Netns, family: &str, chain: &str) -> usize {
    let v: Value = serde_json::from_str(&ns.nft(&["-j", "list", "chain", family, "corral", chain])).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count()
}

#[test]
fn missing_tables_are_damage_and_the_first_add_builds_intact_skeletons() {
    let ns = Netns::new();
    let (_dir, m) = manager(&ns);
    assert!(!intact(&ns, Table::Inet));
    assert_eq!(damage(&ns, Table::Bridge), ["table bridge corral missing"]);
    // Someone else's chains and rules in the same family must not count.
    ns.nft(&["add", "table", "inet", "corral_test_other"]);
    ns.nft(&[
        "add",
        "chain",
        "inet",
        "corral_test_other",
        "postrouting",
        "{ type nat hook postrouting priority srcnat; policy accept; }",
    ]);
    ns.nft(&[
        "add",
        "rule",
        "inet",
        "corral_test_other",
        "postrouting",
        "counter",
    ]);

    m.add(&bridge("aaaa", 2)).unwrap();
    m.add(&ports("aaaa", 2)).unwrap();
    assert_eq!(damage(&ns, Table::Inet), Vec::<String>::new());
    assert_eq!(damage(&ns, Table::Bridge), Vec::<String>::new());
    let scripts = m.backend().take();
    assert!(
        scripts[0].contains("add chain inet corral postrouting"),
        "first ADD is full"
    );
    assert!(
        !scripts[1].contains("add chain") && scripts[1].contains("hostports4"),
        "second ADD, skeleton intact, sends elements only: {scripts:?}"
    );
}

#[test]
fn elements_only_add_and_del_really_change_the_elements() {
    let ns = Netns::new();
    let (_dir, m) = manager(&ns);
    m.add(&bridge("aaaa", 2)).unwrap();
    m.backend().take();

    m.add(&bridge("bbbb", 3)).unwrap();
    m.add(&ports("bbbb", 3)).unwrap();
    assert!(ns.set_json("inet", "masq_src4").contains("10.88.0.3"));
    assert!(ns
        .set_json("bridge", "spoof_allowed")
        .contains("02:42:ac:11:00:03"));
    assert!(ns
        .nft(&["list", "map", "inet", "corral", "hostports4"])
        .contains("tcp . 8003 "));
    m.check(&Owner::new("net1", "bbbb", "eth0"), Source::Bridge)
        .unwrap();

    m.del(&Owner::new("net1", "bbbb", "eth0"), Source::Portmap)
        .unwrap();
    m.del(&Owner::new("net1", "bbbb", "eth0"), Source::Bridge)
        .unwrap();
    assert!(!ns.set_json("inet", "masq_src4").contains("10.88.0.3"));
    assert!(ns.set_json("inet", "masq_src4").contains("10.88.0.2"));
    assert!(!ns
        .set_json("bridge", "spoof_allowed")
        .contains("02:42:ac:11:00:03"));
    assert!(!ns
        .nft(&["list", "map", "inet", "corral", "hostports4"])
        .contains("8003"));

    let scripts = m.backend().take();
    assert_eq!(scripts.len(), 4);
    for script in &scripts {
        assert!(
            script
                .lines()
                .all(|l| l.starts_with("add element ") || l.starts_with("delete element ")),
            "elements only: {script}"
        );
    }
    assert_eq!(rule_count(&ns, "inet", "postrouting"), 8);
    assert!(intact(&ns, Table::Inet) && intact(&ns, Table::Bridge));
}

/// Each damage is seen by the check, and the next ADD sends the full script, which repairs it.
#[test]
fn every_kind_of_damage_is_detected_and_healed_by_the_next_add() {
    let ns = Netns::new();
    let (_dir, m) = manager(&ns);
    m.add(&bridge("aaaa", 2)).unwrap();
    let flush_postrouting: &[&[&str]] = &[&["flush", "chain", "inet", "corral", "postrouting"]];
    let drop_set: &[&[&str]] = &[
        &["flush", "chain", "inet", "corral", "postrouting"],
        &["delete", "set", "inet", "corral", "dnat_masq4"],
    ];
    let stray_rule: &[&[&str]] = &[&["add", "rule", "inet", "corral", "input", "counter"]];
    let drop_chain: &[&[&str]] = &[
        &["flush", "chain", "inet", "corral", "output"],
        &["delete", "chain", "inet", "corral", "output"],
    ];
    let drop_policy: &[&[&str]] = &[&[
        "add",
        "chain",
        "inet",
        "corral",
        "input",
        "{ type filter hook input priority 0; policy drop; }",
    ]];
    let bridge_flush: &[&[&str]] = &[&["flush", "chain", "bridge", "corral", "prerouting"]];
    let cases: [(&str, &[&[&str]], Table, &str); 6] = [
        (
            "flush",
            flush_postrouting,
            Table::Inet,
            "chain postrouting: 0 rules, 8 expected",
        ),
        ("set", drop_set, Table::Inet, "set dnat_masq4 missing"),
        (
            "stray rule",
            stray_rule,
            Table::Inet,
            "chain input: 2 rules, 1 expected",
        ),
        ("chain", drop_chain, Table::Inet, "chain output missing"),
        ("policy", drop_policy, Table::Inet, "chain input: hook"),
        (
            "bridge",
            bridge_flush,
            Table::Bridge,
            "chain prerouting: 0 rules, 1 expected",
        ),
    ];
    for (last, (what, commands, table, expected)) in (10u8..).zip(cases) {
        for command in commands {
            ns.nft(command);
        }
        let found = damage(&ns, table);
        assert!(found.iter().any(|d| d.starts_with(expected)), "{what}: {found:?}");
        assert!(!intact(&ns, table), "{what}");
        m.backend().take();

        let name = format!("c{last}");
        m.add(&bridge(&name, last)).unwrap();
        let scripts = m.backend().take();
        assert!(
            scripts[0].contains("flush chain"),
            "{what}: full script after damage"
        );
        assert_eq!(damage(&ns, table), Vec::<String>::new(), "{what}: healed");
        assert_eq!(rule_count(&ns, "inet", "postrouting"), 8, "{what}");
        assert_eq!(rule_count(&ns, "inet", "input"), 1, "{what}");
        assert_eq!(rule_count(&ns, "bridge", "prerouting"), 1, "{what}");
        assert!(
            ns.set_json("inet", "masq_src4")
                .contains(&format!("10.88.0.{last}")),
            "{what}"
        );
        assert!(
            ns.set_json("bridge", "spoof_ports")
                .contains(&format!("veth{name}")),
            "{what}"
        );
    }
    let policy = ns.nft(&["list", "chain", "inet", "corral", "input"]);
    assert!(policy.contains("policy accept"), "{policy}");
}

/// A base chain re-declared with another priority is damage too; nft refuses to change a chain's hook, so
/// the full script fails as it always did, with nft's error naming the chain, and nothing is recorded.
#[test]
fn a_rehooked_chain_is_damage_that_nft_refuses_to_repair() {
    let ns = Netns::new();
    let (_dir, m) = manager(&ns);
    m.add(&bridge("aaaa", 2)).unwrap();
    ns.nft(&["flush", "chain", "inet", "corral", "output"]);
    ns.nft(&["delete", "chain", "inet", "corral", "output"]);
    ns.nft(&[
        "add",
        "chain",
        "inet",
        "corral",
        "output",
        "{ type nat hook output priority 50; policy accept; }",
    ]);
    ns.nft(&[
        "add",
        "rule",
        "inet",
        "corral",
        "output",
        "fib daddr type local jump hostports",
    ]);
    let found = damage(&ns, Table::Inet);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("chain output: hook Some(ChainHook { number: 3, priority: 50"),
        "{found:?}"
    );
    let err = m.add(&bridge("bbbb", 3)).unwrap_err();
    assert!(err.to_string().contains("add chain inet corral output"), "{err}");
    assert_eq!(m.records().unwrap().records.len(), 1);
}

/// A table deleted between the check and the apply: the element lines fail and the full script is sent.
#[test]
fn a_table_gone_after_the_check_is_rebuilt_by_the_retry() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let racing = Racing {
        cli: NftCli::in_netns(ns.path()),
        ns_path: ns.path(),
    };
    let m = NatManager::new(dir.path(), racing);
    m.add(&bridge("aaaa", 2)).unwrap();
    m.add(&bridge("bbbb", 3)).unwrap();
    assert!(ns.set_json("inet", "masq_src4").contains("10.88.0.3"));
    assert!(intact(&ns, Table::Inet));
}

/// Deletes `table inet corral` right after reporting it intact.
struct Racing {
    cli: NftCli,
    ns_path: std::path::PathBuf,
}

impl NftBackend for Racing {
    fn apply(&self, script: &str) -> Result<(), NatError> {
        self.cli.apply(script)
    }
    fn list_table(&self, family: &str, table: &str) -> Result<Option<Value>, NatError> {
        self.cli.list_table(family, table)
    }
    fn probe(&self) -> Result<(), NatError> {
        self.cli.probe()
    }
    fn skeleton_intact(&self, table: Table) -> Result<bool, NatError> {
        let intact = self.cli.skeleton_intact(table)?;
        if intact && table == Table::Inet {
            let status = std::process::Command::new("nsenter")
                .arg(format!("--net={}", self.ns_path.display()))
                .args(["nft", "delete", "table", "inet", "corral"])
                .status()
                .unwrap();
            assert!(status.success());
        }
        Ok(intact)
    }
}

/// Captures the set, chain and rule dumps of both tables into `tests/fixtures/netlink/skeleton-*.bin` with
/// `CORRAL_BLESS=1`; otherwise checks that the stored fixtures still parse to what the kernel holds now.
#[test]
fn captured_skeleton_fixtures_match_the_kernel() {
    let ns = Netns::new();
    let (_dir, m) = manager(&ns);
    m.add(&bridge("aaaa", 2)).unwrap();
    m.add(&ports("aaaa", 2)).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netlink");
    for table in [Table::Inet, Table::Bridge] {
        for (dump, name) in [
            (Dump::Sets, "sets"),
            (Dump::Chains, "chains"),
            (Dump::Rules, "rules"),
        ] {
            let live = capture_objects(Some(&ns.path()), dump, table).unwrap();
            let path = dir.join(format!("skeleton-{}-{name}.bin", table.family()));
            if std::env::var_os("CORRAL_BLESS").is_some() {
                std::fs::write(&path, &live).unwrap();
            }
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(objects(&live), objects(&stored), "{}", path.display());
        }
    }
}

fn objects(bytes: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = corral_nat::nfnl::parse_datagram(bytes)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            corral_nat::nfnl::Reply::Object { object, .. } => Some(format!("{object:?}")),
            _ => None,
        })
        .collect();
    out.sort();
    out
}
