//! The planner: pure functions from records to one nft text script, applied later as one `nft -f -`
//! transaction.
//!
//! Every verb plans a [`Transaction`]: the tables it touches and its element lines. Its [`Transaction::full`]
//! text starts with the idempotent skeleton of each of those tables: `add table`, `add set` (no-op when
//! present), `add chain`, then `flush chain` and the few static rules of each chain. So a full transaction
//! heals a damaged skeleton, never duplicates a rule, and never touches elements it does not name.
//!
//! The skeleton is also what makes a transaction slow: declaring base chains and flushing chains makes the
//! kernel wait for RCU grace periods (measured in a netns holding the table: full script + 1 element ≈ 18 ms,
//! the skeleton without flushes and rules ≈ 14 ms, the element lines alone ≈ 3 ms). So the manager sends
//! [`Transaction::elements_only`] when a netlink read shows every touched table's skeleton intact
//! ([`skeleton_damage`] compares what the kernel holds with `CHAINS` and [`Set::ALL`], the same constants
//! the skeleton text is written from), and the full text otherwise: any transaction still heals a damaged
//! skeleton, since the damage is detected first.
//!
//! Element removal must not fail when the element is already gone (nft 1.0.6 has no `destroy`, and deleting a
//! missing element aborts the whole transaction), so each removal is `add element …` followed by
//! `delete element …` in the same transaction: the add is a no-op when the element exists.
//!
//! Why text and not JSON: nft 1.0.6's JSON parser mishandles typed sets and maps with concatenations (see
//! `research/crates.md` §3); text is what nft prints and reads back.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::element::{record_elements, Claims, Element, Set, Table, TABLE_NAME};
use crate::model::AttachmentRecord;
use crate::nfnl::{ObservedSkeleton, NF_ACCEPT};

/// nft's limit on a comment (`NFTNL_UDATA_COMMENT_MAXLEN`).
const COMMENT_MAX: usize = 128;

/// A chain of corral's: its declaration (empty for a regular chain), the same hook in the numbers the kernel
/// reports (checked against the text by a unit test), and its static rules (rewritten by every full
/// transaction).
struct BaseChain {
    table: Table,
    name: &'static str,
    declaration: &'static str,
    hook: Option<Hook>,
    rules: &'static [&'static str],
}

/// A base chain's hook as netlink reports it (`NFTA_CHAIN_HOOK`, `NFTA_CHAIN_TYPE`); its policy is accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hook {
    /// `NF_INET_*` / `NF_BR_*` hook number.
    number: u32,
    priority: i32,
    /// The chain type: `nat` or `filter`.
    kind: &'static str,
}

/// `NF_INET_PRE_ROUTING`, `NF_INET_LOCAL_IN`, `NF_INET_LOCAL_OUT`, `NF_INET_POST_ROUTING`; `NF_BR_PRE_ROUTING`.
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_BR_PRE_ROUTING: u32 = 0;

/// Port forwarding: one map lookup per family and kind (specific host address first, then every local
/// address). A key missing from a map ends the rule without a verdict, so the next rule is tried.
/// `meta l4proto { tcp, udp, sctp }` gives nft the transport context a DNAT with a port needs.
const HOSTPORTS: BaseChain = BaseChain {
    table: Table::Inet,
    name: "hostports",
    declaration: "",
    hook: None,
    rules: &[
        "meta l4proto { tcp, udp, sctp } dnat ip to meta l4proto . ip daddr . th dport map @hostip_ports4",
        "meta l4proto { tcp, udp, sctp } dnat ip to meta l4proto . th dport map @hostports4",
        "meta l4proto { tcp, udp, sctp } dnat ip6 to meta l4proto . ip6 daddr . th dport map @hostip_ports6",
        "meta l4proto { tcp, udp, sctp } dnat ip6 to meta l4proto . th dport map @hostports6",
    ],
};

/// Traffic arriving for a local address (the reference gates hostIP mappings the same way since v1.9.0: a
/// hostIP that is not local must not capture forwarded traffic).
const PREROUTING: BaseChain = BaseChain {
    table: Table::Inet,
    name: "prerouting",
    declaration: "type nat hook prerouting priority dstnat; policy accept;",
    hook: Some(Hook {
        number: NF_INET_PRE_ROUTING,
        priority: -100,
        kind: "nat",
    }),
    rules: &["fib daddr type local jump hostports"],
};

/// Node-originated traffic, including to 127.0.0.1. nft 1.0.6 accepts the `dstnat` keyword only in
/// prerouting, so the number (-100) is spelled out.
const OUTPUT: BaseChain = BaseChain {
    table: Table::Inet,
    name: "output",
    declaration: "type nat hook output priority -100; policy accept;",
    hook: Some(Hook {
        number: NF_INET_LOCAL_OUT,
        priority: -100,
        kind: "nat",
    }),
    rules: &["fib daddr type local jump hostports"],
};

/// The CVE-2020-8558 guard that goes with `route_localnet=1`: a packet for 127.0.0.0/8 that arrived on a
/// real interface is dropped unless it belongs to a DNATed connection (the replies of localhost → container).
/// `ct status & dnat == 0` and not `ct status != dnat`: nft 1.0.6 compiles the latter into a comparison of
/// the whole status word, which would drop everything. nft prints it back as `ct status ! dnat`.
const INPUT: BaseChain = BaseChain {
    table: Table::Inet,
    name: "input",
    declaration: "type filter hook input priority 0; policy accept;",
    hook: Some(Hook {
        number: NF_INET_LOCAL_IN,
        priority: 0,
        kind: "filter",
    }),
    rules: &["iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop"],
};

/// DNATed connections listed in `dnat_masq*` are masqueraded (hairpin, localhost, masqAll); then container
/// addresses are masqueraded unless the destination is multicast or in the container's own subnet (the
/// reference plugin's ipMasq semantics), with one set lookup per packet whatever the number of containers.
const POSTROUTING: BaseChain = BaseChain {
    table: Table::Inet,
    name: "postrouting",
    declaration: "type nat hook postrouting priority srcnat; policy accept;",
    hook: Some(Hook {
        number: NF_INET_POST_ROUTING,
        priority: 100,
        kind: "nat",
    }),
    rules: &[
        "ct status dnat ip saddr . ip daddr @dnat_masq4 masquerade",
        "ct status dnat ip6 saddr . ip6 daddr @dnat_masq6 masquerade",
        "ip daddr 224.0.0.0/4 return",
        "ip6 daddr ff00::/8 return",
        "ip saddr . ip daddr @masq_skip4 return",
        "ip saddr @masq_src4 masquerade",
        "ip6 saddr . ip6 daddr @masq_skip6 return",
        "ip6 saddr @masq_src6 masquerade",
    ],
};

/// Drop frames from a checked port whose source MAC is not the one allowed there. Priority -300 (printed as
/// `dstnat`) runs before any other bridge prerouting chain, like the reference's nat-type chain.
const SPOOF_PREROUTING: BaseChain = BaseChain {
    table: Table::Bridge,
    name: "prerouting",
    declaration: "type filter hook prerouting priority -300; policy accept;",
    hook: Some(Hook {
        number: NF_BR_PRE_ROUTING,
        priority: -300,
        kind: "filter",
    }),
    rules: &["iifname @spoof_ports iifname . ether saddr != @spoof_allowed drop"],
};

/// In declaration order: a chain is declared before the rules that jump to it.
const CHAINS: [BaseChain; 6] = [
    HOSTPORTS,
    PREROUTING,
    OUTPUT,
    INPUT,
    POSTROUTING,
    SPOOF_PREROUTING,
];

/// Names of the base chains the skeleton keeps in `table` (CHECK verifies they exist).
pub fn base_chains(table: Table) -> Vec<&'static str> {
    CHAINS
        .iter()
        .filter(|c| c.table == table)
        .map(|c| c.name)
        .collect()
}

/// An element to add, with the owner written into its comment (for people reading `nft list`; ownership
/// itself comes from the records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addition {
    /// The element.
    pub element: Element,
    /// `network/container/ifname` of its (first) owner.
    pub comment: String,
}

/// One planned transaction: the tables it touches and its element lines (removals, then additions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// The tables whose sets the element lines name.
    pub tables: BTreeSet<Table>,
    /// The `add element` / `delete element` lines.
    pub elements: String,
    /// The elements it removes.
    pub removals: Vec<Element>,
    /// Whether it adds anything (else it can go over netlink, [`crate::NftBackend::remove_elements`]).
    pub adds: bool,
}

impl Transaction {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// The skeleton of every touched table, then the element lines: correct whatever state the tables are in.
    pub fn full(&self) -> String {
        let mut script = String::new();
        for table in &self.tables {
            push_skeleton(&mut script, *table);
        }
        script.push_str(&self.elements);
        script
    }

    /// Only removals: nothing to add (and something to remove).
    pub fn only_removes(&self) -> bool {
        !self.adds && !self.removals.is_empty()
    }

    /// The element lines alone: correct only while every touched table's skeleton is intact, and several
    /// times faster (no base-chain declarations or chain flushes for the kernel to wait on).
    pub fn elements_only(&self) -> &str {
        &self.elements
    }
}

/// Adds everything `record` asks for.
pub fn plan_add(record: &AttachmentRecord) -> Transaction {
    plan_transaction(&additions(record), &[])
}

/// Removes what `record` added, except elements that other live records claim.
pub fn plan_remove(record: &AttachmentRecord, still_claimed: &Claims) -> Transaction {
    let removals = removable(record_elements(record), &[], still_claimed);
    plan_transaction(&[], &removals)
}

/// Moves state to `new` in one transaction: removes what only the `old` records had (the attachment's previous
/// record, and stale owners of its host ports), unless another record claims it, then adds `new`.
pub fn plan_replace(
    old: &[&AttachmentRecord],
    new: &AttachmentRecord,
    still_claimed: &Claims,
) -> Transaction {
    let adds = additions(new);
    let keep: Vec<Element> = adds.iter().map(|a| a.element.clone()).collect();
    let mut removals: Vec<Element> = Vec::new();
    for element in old.iter().flat_map(|r| record_elements(r)) {
        if !removals.contains(&element) {
            removals.push(element);
        }
    }
    let removals = removable(removals, &keep, still_claimed);
    plan_transaction(&adds, &removals)
}

/// Rebuilds the skeleton and re-adds every recorded element (after `nft flush ruleset`, a firewall reload or
/// a reboot), so its script is always the full one. Exact duplicates are added once; an element overlapping
/// one already planned is left out (nft would refuse the whole transaction) and returned in the second value
/// so the caller can report it.
pub fn plan_reconcile<'a>(
    records: impl IntoIterator<Item = &'a AttachmentRecord>,
) -> (String, Vec<Addition>) {
    let mut planned: Vec<Addition> = Vec::new();
    let mut seen = Claims::default();
    let mut conflicts = Vec::new();
    for record in records {
        for addition in additions(record) {
            if seen.contains(&addition.element) {
                continue;
            }
            if seen.covers(&addition.element) {
                conflicts.push(addition);
                continue;
            }
            seen.insert(addition.element.clone());
            planned.push(addition);
        }
    }
    (plan_transaction(&planned, &[]).full(), conflicts)
}

/// The one transaction behind every verb: removals, then additions, in the touched tables. Empty when there
/// is nothing to do.
pub fn plan_transaction(additions: &[Addition], removals: &[Element]) -> Transaction {
    let tables: BTreeSet<Table> = additions
        .iter()
        .map(|a| &a.element)
        .chain(removals)
        .map(|e| e.set().table())
        .collect();
    let mut script = String::new();
    for set in Set::ALL {
        let ours: Vec<&Element> = removals.iter().filter(|e| e.set() == set).collect();
        if !ours.is_empty() {
            let full: Vec<String> = ours.iter().map(|e| e.text(None)).collect();
            let keys: Vec<String> = ours.iter().map(|e| e.key()).collect();
            push_line(
                &mut script,
                format_args!("add element {} {{ {} }}", set_ref(set), full.join(", ")),
            );
            push_line(
                &mut script,
                format_args!("delete element {} {{ {} }}", set_ref(set), keys.join(", ")),
            );
        }
    }
    for set in Set::ALL {
        let keys: Vec<String> = additions
            .iter()
            .filter(|a| a.element.set() == set)
            .map(|a| a.element.text(Some(&a.comment)))
            .collect();
        if !keys.is_empty() {
            push_line(
                &mut script,
                format_args!("add element {} {{ {} }}", set_ref(set), keys.join(", ")),
            );
        }
    }
    Transaction {
        tables,
        elements: script,
        removals: removals.to_vec(),
        adds: !additions.is_empty(),
    }
}

/// How `table`'s skeleton in the kernel (`None`: the table is missing) differs from the one [`Transaction::full`]
/// writes; empty when it is intact: every set and map of ours exists, every chain exists with its hook, type
/// and accept policy, and holds exactly as many rules as the skeleton writes (a flushed chain or a stray rule
/// counts as damage). Rule contents are not compared: a rule rewritten in place is not detected.
pub fn skeleton_damage(table: Table, observed: Option<&ObservedSkeleton>) -> Vec<String> {
    let family = table.family();
    let Some(observed) = observed else {
        return vec![format!("table {family} {TABLE_NAME} missing")];
    };
    let mut damage = Vec::new();
    for set in Set::ALL.into_iter().filter(|s| s.table() == table) {
        if !observed.sets.contains(set.name()) {
            damage.push(format!("{} {} missing", set.kind(), set.name()));
        }
    }
    for chain in CHAINS.iter().filter(|c| c.table == table) {
        let Some(found) = observed.chains.get(chain.name) else {
            damage.push(format!("chain {} missing", chain.name));
            continue;
        };
        let hook_matches = match (&chain.hook, &found.hook) {
            (None, None) => true,
            (Some(want), Some(got)) => {
                want.number == got.number
                    && want.priority == got.priority
                    && want.kind == got.kind
                    && got.policy == Some(NF_ACCEPT)
            }
            _ => false,
        };
        if !hook_matches {
            damage.push(format!("chain {}: hook {:?}", chain.name, found.hook));
        }
        if found.rules != chain.rules.len() {
            damage.push(format!(
                "chain {}: {} rules, {} expected",
                chain.name,
                found.rules,
                chain.rules.len()
            ));
        }
    }
    damage
}

fn additions(record: &AttachmentRecord) -> Vec<Addition> {
    let mut comment = record.owner.to_string();
    comment.truncate(COMMENT_MAX);
    record_elements(record)
        .into_iter()
        .map(|element| Addition {
            element,
            comment: comment.clone(),
        })
        .collect()
}

fn removable(elements: Vec<Element>, keep: &[Element], still_claimed: &Claims) -> Vec<Element> {
    elements
        .into_iter()
        .filter(|e| !keep.contains(e) && !still_claimed.covers(e))
        .collect()
}

fn push_skeleton(script: &mut String, table: Table) {
    let family = table.family();
    push_line(script, format_args!("add table {family} {TABLE_NAME}"));
    for set in Set::ALL.into_iter().filter(|s| s.table() == table) {
        push_line(
            script,
            format_args!("add {} {} {{ {} }}", set.kind(), set_ref(set), set.declaration()),
        );
    }
    for chain in CHAINS.iter().filter(|c| c.table == table) {
        let name = chain.name;
        if chain.declaration.is_empty() {
            push_line(script, format_args!("add chain {family} {TABLE_NAME} {name}"));
        } else {
            push_line(
                script,
                format_args!(
                    "add chain {family} {TABLE_NAME} {name} {{ {} }}",
                    chain.declaration
                ),
            );
        }
        push_line(script, format_args!("flush chain {family} {TABLE_NAME} {name}"));
        for rule in chain.rules {
            push_line(
                script,
                format_args!("add rule {family} {TABLE_NAME} {name} {rule}"),
            );
        }
    }
}

fn set_ref(set: Set) -> String {
    format!("{} {TABLE_NAME} {}", set.table().family(), set.name())
}

fn push_line(script: &mut String, line: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = script.write_fmt(line);
    script.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MasqEntry, Owner, SpoofEntry};

    fn masq(ip: &str, subnet: &str) -> MasqEntry {
        MasqEntry {
            ip: ip.parse().unwrap(),
            subnet: subnet.parse().unwrap(),
        }
    }

    fn dual_stack(container: &str, v4: &str, v6: &str, veth: &str, last: u8) -> AttachmentRecord {
        let mut r = AttachmentRecord::new(Owner::new("net1", container, "eth0"));
        r.masq = vec![masq(v4, "10.88.0.0/16"), masq(v6, "fd00:88::/64")];
        r.spoof = Some(SpoofEntry {
            host_ifname: veth.into(),
            mac: [0x02, 0x42, 0xac, 0x11, 0x00, last],
        });
        r
    }

    fn a() -> AttachmentRecord {
        dual_stack("aaaa", "10.88.0.2", "fd00:88::2", "veth0a", 2)
    }

    fn b() -> AttachmentRecord {
        dual_stack("bbbb", "10.88.0.3", "fd00:88::3", "veth0b", 3)
    }

    /// Compares with a golden file; `CORRAL_BLESS=1` rewrites it.
    pub(super) fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        if std::env::var_os("CORRAL_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            actual, expected,
            "golden {name} differs (CORRAL_BLESS=1 to update)"
        );
    }

    #[test]
    fn add_dual_stack_with_spoof_check() {
        golden("add-dual-stack-spoof.nft", &plan_add(&a()).full());
    }

    #[test]
    fn add_masq_only_leaves_the_bridge_table_alone() {
        let mut r = a();
        r.masq.truncate(1);
        r.spoof = None;
        let script = plan_add(&r).full();
        golden("add-masq4.nft", &script);
        assert!(!script.contains("bridge"));
    }

    #[test]
    fn add_spoof_only_leaves_the_inet_table_alone() {
        let mut r = a();
        r.masq.clear();
        let script = plan_add(&r).full();
        golden("add-spoof.nft", &script);
        assert!(!script.contains("inet"));
    }

    #[test]
    fn remove_uses_add_then_delete() {
        golden(
            "remove-dual-stack-spoof.nft",
            &plan_remove(&a(), &Claims::default()).full(),
        );
    }

    #[test]
    fn remove_skips_elements_another_record_claims() {
        let mut leaked = b();
        leaked.masq = vec![masq("10.88.0.2", "10.88.0.0/16")];
        leaked.spoof = None;
        let script = plan_remove(&a(), &Claims::from_records([&leaked])).full();
        golden("remove-shared-ip.nft", &script);
        assert!(!script.contains("10.88.0.2"));
    }

    #[test]
    fn remove_of_empty_record_is_empty() {
        let r = AttachmentRecord::new(Owner::new("n", "c", "eth0"));
        assert!(plan_remove(&r, &Claims::default()).is_empty());
        assert_eq!(plan_add(&r).full(), "");
    }

    #[test]
    fn replace_removes_only_what_changed() {
        let mut new = a();
        new.masq[0] = masq("10.88.0.9", "10.88.0.0/16");
        new.spoof = None;
        golden(
            "replace.nft",
            &plan_replace(&[&a()], &new, &Claims::default()).full(),
        );
    }

    #[test]
    fn reconcile_adds_every_record_once_and_reports_overlaps() {
        let mut overlapping = AttachmentRecord::new(Owner::new("net2", "cccc", "eth1"));
        overlapping.masq = vec![masq("10.88.0.2", "10.88.0.0/24")];
        let dup = a();
        let (script, conflicts) = plan_reconcile([&a(), &b(), &dup, &overlapping]);
        golden("reconcile.nft", &script);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].comment, "net2/cccc/eth1");
        assert_eq!(plan_reconcile([]).0, "");
    }

    #[test]
    fn elements_only_is_the_full_script_without_the_skeleton() {
        let add = plan_add(&a());
        golden("add-dual-stack-spoof.elements.nft", add.elements_only());
        assert_eq!(add.tables, BTreeSet::from([Table::Inet, Table::Bridge]));
        assert!(add.full().ends_with(add.elements_only()));
        let remove = plan_remove(&a(), &Claims::default());
        golden("remove-dual-stack-spoof.elements.nft", remove.elements_only());
        for script in [add.elements_only(), remove.elements_only()] {
            assert!(script
                .lines()
                .all(|l| l.starts_with("add element ") || l.starts_with("delete element ")));
        }
        let mut masq_only = a();
        masq_only.spoof = None;
        let masq_only = plan_add(&masq_only);
        assert_eq!(masq_only.tables, BTreeSet::from([Table::Inet]));
        assert!(!masq_only.elements_only().contains("bridge"));
    }

    /// The hook numbers the skeleton check compares must say what the declaration text says.
    #[test]
    fn chain_hooks_agree_with_their_declarations() {
        for chain in &CHAINS {
            let Some(hook) = chain.hook else {
                assert_eq!(chain.declaration, "", "{}", chain.name);
                continue;
            };
            let words: Vec<&str> = chain
                .declaration
                .split([' ', ';'])
                .filter(|w| !w.is_empty())
                .collect();
            let [type_kw, kind, hook_kw, hook_name, priority_kw, priority, policy_kw, policy] = words[..]
            else {
                panic!("unexpected declaration {:?}", chain.declaration);
            };
            assert_eq!(
                (type_kw, hook_kw, priority_kw, policy_kw),
                ("type", "hook", "priority", "policy")
            );
            assert_eq!(kind, hook.kind, "{}", chain.name);
            assert_eq!(policy, "accept", "{}", chain.name);
            let number = match (chain.table, hook_name) {
                (Table::Inet, "prerouting") => NF_INET_PRE_ROUTING,
                (Table::Inet, "input") => NF_INET_LOCAL_IN,
                (Table::Inet, "output") => NF_INET_LOCAL_OUT,
                (Table::Inet, "postrouting") => NF_INET_POST_ROUTING,
                (Table::Bridge, "prerouting") => NF_BR_PRE_ROUTING,
                other => panic!("unknown hook {other:?}"),
            };
            assert_eq!(number, hook.number, "{}", chain.name);
            // nft's standard priority names in the inet family.
            let priority = match priority {
                "dstnat" => -100,
                "srcnat" => 100,
                "filter" => 0,
                n => n.parse().unwrap(),
            };
            assert_eq!(priority, hook.priority, "{}", chain.name);
        }
    }

    /// The skeleton a full transaction writes, as the kernel would report it.
    fn intact(table: Table) -> ObservedSkeleton {
        let mut observed = ObservedSkeleton::default();
        for set in Set::ALL.into_iter().filter(|s| s.table() == table) {
            observed.sets.insert(set.name().to_owned());
        }
        // nft's anonymous sets (`{ tcp, udp, sctp }`) are not ours to check.
        observed.sets.insert("__set0".to_owned());
        for chain in CHAINS.iter().filter(|c| c.table == table) {
            let hook = chain.hook.map(|h| crate::nfnl::ChainHook {
                number: h.number,
                priority: h.priority,
                kind: h.kind.to_owned(),
                policy: Some(NF_ACCEPT),
            });
            let found = crate::nfnl::ObservedChain {
                hook,
                rules: chain.rules.len(),
            };
            observed.chains.insert(chain.name.to_owned(), found);
        }
        observed
    }

    #[test]
    fn skeleton_damage_names_every_difference() {
        for table in [Table::Inet, Table::Bridge] {
            assert_eq!(skeleton_damage(table, Some(&intact(table))), Vec::<String>::new());
            assert_eq!(
                skeleton_damage(table, None),
                [format!("table {} corral missing", table.family())]
            );
        }
        let damaged = |change: &dyn Fn(&mut ObservedSkeleton)| {
            let mut observed = intact(Table::Inet);
            change(&mut observed);
            skeleton_damage(Table::Inet, Some(&observed))
        };
        let chain = |o: &mut ObservedSkeleton, name: &str| o.chains.get_mut(name).unwrap().clone();
        assert_eq!(
            damaged(&|o| {
                o.sets.remove("masq_src4");
            }),
            ["set masq_src4 missing"]
        );
        assert_eq!(
            damaged(&|o| {
                o.sets.remove("hostports6");
            }),
            ["map hostports6 missing"]
        );
        assert_eq!(
            damaged(&|o| {
                o.chains.remove("hostports");
            }),
            ["chain hostports missing"]
        );
        assert_eq!(
            damaged(&|o| o.chains.get_mut("postrouting").unwrap().rules = 0),
            ["chain postrouting: 0 rules, 8 expected"]
        );
        assert_eq!(
            damaged(&|o| o.chains.get_mut("input").unwrap().rules += 1),
            ["chain input: 2 rules, 1 expected"]
        );
        let rehooked = [
            |h: &mut crate::nfnl::ChainHook| h.priority = 0,
            |h: &mut crate::nfnl::ChainHook| h.number = NF_INET_LOCAL_IN,
            |h: &mut crate::nfnl::ChainHook| h.kind = "filter".into(),
            |h: &mut crate::nfnl::ChainHook| h.policy = Some(0),
        ];
        for change in rehooked {
            let damage = damaged(&|o| {
                let mut c = chain(o, "prerouting");
                c.hook.as_mut().map(change);
                o.chains.insert("prerouting".into(), c);
            });
            assert_eq!(damage.len(), 1, "{damage:?}");
            assert!(damage[0].starts_with("chain prerouting: hook"), "{damage:?}");
        }
        let base_chain_without_hook = damaged(&|o| o.chains.get_mut("output").unwrap().hook = None);
        assert_eq!(base_chain_without_hook, ["chain output: hook None"]);
        let regular_chain_with_hook = damaged(&|o| {
            let hook = chain(o, "output").hook;
            o.chains.get_mut("hostports").unwrap().hook = hook;
        });
        assert_eq!(regular_chain_with_hook.len(), 1);
    }

    #[test]
    fn long_owner_comment_is_truncated_to_nft_limit() {
        let mut r = AttachmentRecord::new(Owner::new("n".repeat(200), "c", "eth0"));
        r.masq = vec![masq("10.0.0.2", "10.0.0.0/8")];
        let script = plan_add(&r).full();
        assert!(script.contains(&format!("comment \"{}\"", "n".repeat(128))));
        assert!(!script.contains(&"n".repeat(129)));
    }
}

#[cfg(test)]
mod port_tests;
