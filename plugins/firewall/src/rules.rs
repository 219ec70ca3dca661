//! The nft side, pure: the script that declares corral's `fw_allow4`/`fw_allow6` sets and `fw_forward` chain in
//! `table inet corral` and adds or removes elements, and the parser of the table's JSON listing for CHECK.
//!
//! The chain runs on the forward hook at priority `filter - 10`. Its `accept` ends evaluation of *this* chain
//! only: nftables evaluates every base chain on the hook and a drop in any of them wins, so this chain cannot
//! let traffic through another table's drop (see docs/firewall.md).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::Value;

/// corral's table (shared with the NAT manager, which never touches these names).
pub const TABLE: &str = "inet corral";
/// The chain's name.
pub const CHAIN: &str = "fw_forward";
/// IPv4 container addresses allowed.
pub const SET4: &str = "fw_allow4";
/// IPv6 container addresses allowed.
pub const SET6: &str = "fw_allow6";

const RULES: [&str; 4] = [
    "ip daddr @fw_allow4 ct state established,related accept",
    "ip saddr @fw_allow4 accept",
    "ip6 daddr @fw_allow6 ct state established,related accept",
    "ip6 saddr @fw_allow6 accept",
];

fn set_of(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        SET4
    } else {
        SET6
    }
}

/// One transaction: the idempotent skeleton (table, sets, chain rebuilt), then `add` and `delete` elements.
/// Elements to delete must be present (callers delete only what they added; nft 1.0.6 has no `destroy`).
pub fn script(add: &[IpAddr], delete: &[IpAddr]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "add table {TABLE}");
    let _ = writeln!(s, "add set {TABLE} {SET4} {{ type ipv4_addr; }}");
    let _ = writeln!(s, "add set {TABLE} {SET6} {{ type ipv6_addr; }}");
    let _ = writeln!(
        s,
        "add chain {TABLE} {CHAIN} {{ type filter hook forward priority filter - 10; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {TABLE} {CHAIN}");
    for rule in RULES {
        let _ = writeln!(s, "add rule {TABLE} {CHAIN} {rule}");
    }
    for (verb, ips) in [("add", add), ("delete", delete)] {
        for ip in ips {
            let _ = writeln!(s, "{verb} element {TABLE} {} {{ {ip} }}", set_of(ip));
        }
    }
    s
}

/// The addresses in `fw_allow4`/`fw_allow6` of a `nft -j list table inet corral` listing, and whether the
/// chain exists.
pub fn parse_listing(listing: &Value) -> (BTreeSet<IpAddr>, bool) {
    let mut ips = BTreeSet::new();
    let mut chain = false;
    for item in listing["nftables"].as_array().into_iter().flatten() {
        if item["chain"]["name"] == CHAIN {
            chain = true;
        }
        let set = &item["set"];
        if set["name"] != SET4 && set["name"] != SET6 {
            continue;
        }
        for elem in set["elem"].as_array().into_iter().flatten() {
            // A plain address, or {"elem": {"val": address, ...}} when it carries a comment or counter.
            let text = elem.as_str().or_else(|| elem["elem"]["val"].as_str());
            if let Some(ip) = text.and_then(|t| t.parse().ok()) {
                ips.insert(ip);
            }
        }
    }
    (ips, chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn script_declares_the_skeleton_then_elements_by_family() {
        let s = script(&["10.0.0.2".parse().unwrap()], &["fd00::2".parse().unwrap()]);
        assert!(s.starts_with("add table inet corral\n"), "{s}");
        assert!(
            s.contains("type filter hook forward priority filter - 10; policy accept;"),
            "{s}"
        );
        assert!(
            s.contains("add element inet corral fw_allow4 { 10.0.0.2 }\n"),
            "{s}"
        );
        assert!(
            s.contains("delete element inet corral fw_allow6 { fd00::2 }\n"),
            "{s}"
        );
        assert!(s.find("flush chain").unwrap() < s.find("add rule").unwrap());
    }

    #[test]
    fn listing_yields_both_sets_and_the_chain() {
        let listing = json!({"nftables": [
            {"metainfo": {}},
            {"set": {"name": "fw_allow4", "elem": ["10.0.0.2", {"elem": {"val": "10.0.0.3", "comment": "x"}}]}},
            {"set": {"name": "fw_allow6", "elem": ["fd00::2"]}},
            {"set": {"name": "masq_src4", "elem": ["10.0.0.9"]}},
            {"chain": {"name": "fw_forward"}}
        ]});
        let (ips, chain) = parse_listing(&listing);
        assert!(chain);
        let want: BTreeSet<IpAddr> = ["10.0.0.2", "10.0.0.3", "fd00::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        assert_eq!(parse_listing(&json!({})), (BTreeSet::new(), false));
    }
}
