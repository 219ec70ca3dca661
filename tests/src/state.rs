//! Reading what a plugin left in the node: nftables set elements in corral's tables, NAT records, IPAM
//! reservations, veths; and a [`Snapshot`] of all of them to prove a failed call left nothing behind.

use crate::{veths, Netns, Node};
use serde_json::Value;

/// Elements of `set` in `table <family> corral` inside `ns`, as nft prints them (`10.1.0.2`,
/// `10.1.0.2 . 10.1.0.0/24`, `veth1234 . 02:00:00:00:00:01`). Empty when the table or set does not exist.
pub fn nft_elements(ns: &Netns, family: &str, set: &str) -> Vec<String> {
    let out = ns.exec(&["nft", "-j", "list", "set", family, "corral", set]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No such file or directory"),
            "nft list set {family} corral {set} in {}: {err}",
            ns.name
        );
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut elems: Vec<String> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("set"))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .map(|e| element_text(&e))
        .collect();
    elems.sort();
    elems
}

/// nft's JSON for one element, as text.
fn element_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(e) = o.get("elem") {
                element_text(&e["val"])
            } else if let Some(c) = o.get("concat") {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(element_text)
                    .collect::<Vec<_>>()
                    .join(" . ")
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", element_text(&p["addr"]), p["len"])
            } else if let Some(r) = o.get("range") {
                format!("{}-{}", element_text(&r[0]), element_text(&r[1]))
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Every set of corral's, as (family, set).
pub const SETS: [(&str, &str); 6] = [
    ("inet", "masq_src4"),
    ("inet", "masq_skip4"),
    ("inet", "masq_src6"),
    ("inet", "masq_skip6"),
    ("bridge", "spoof_ports"),
    ("bridge", "spoof_allowed"),
];

/// Everything a bridge attachment can leave in a node, for before/after comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Veths in the node namespace.
    pub veths: Vec<String>,
    /// IPAM reservation files of the network.
    pub reserved: Vec<String>,
    /// IPAM index files (`<id>@<ifname>`) of the network.
    pub ipam_index: Vec<String>,
    /// NAT record files of the network.
    pub nat_records: Vec<String>,
    /// `set: element` for every element of corral's sets.
    pub elements: Vec<String>,
}

impl Node {
    /// Elements of one of corral's sets in the node.
    pub fn elements(&self, family: &str, set: &str) -> Vec<String> {
        nft_elements(&self.ns, family, set)
    }

    /// NAT record files (`<id>.<ifname>.json`) of `network`.
    pub fn nat_records(&self, network: &str) -> Vec<String> {
        list_dir(&self.state.join("nat").join(network))
            .into_iter()
            .filter(|n| n.ends_with(".json"))
            .collect()
    }

    /// IPAM index files of `network` (corral's `<id>@<ifname>`).
    pub fn ipam_index(&self, network: &str) -> Vec<String> {
        list_dir(&self.state.join("ipam").join(network).join(".corral"))
    }

    /// The state of everything a bridge attachment of `network` creates in the node.
    pub fn snapshot(&self, network: &str) -> Snapshot {
        let mut elements = Vec::new();
        for (family, set) in SETS {
            elements.extend(
                self.elements(family, set)
                    .into_iter()
                    .map(|e| format!("{set}: {e}")),
            );
        }
        Snapshot {
            veths: veths(&self.ns),
            reserved: self.reserved_ips(network),
            ipam_index: self.ipam_index(network),
            nat_records: self.nat_records(network),
            elements,
        }
    }

    /// Asserts the node holds nothing of `network`: no veth, no reservation, no NAT record or element.
    pub fn assert_empty(&self, network: &str, why: &str) {
        let s = self.snapshot(network);
        assert!(
            s.veths.is_empty()
                && s.reserved.is_empty()
                && s.ipam_index.is_empty()
                && s.nat_records.is_empty()
                && s.elements.is_empty(),
            "{why}: the node still holds {s:#?}"
        );
    }

    /// A sysctl in the node (`net/ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str) -> String {
        self.ns.sysctl(key)
    }
}

fn list_dir(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
