//! Set elements: the unit of per-attachment kernel state. A record expands into elements; the planner turns
//! elements into nft text; `inspect` turns the kernel's JSON back into elements, so CHECK compares like with
//! like.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{format_mac, AttachmentRecord};

/// The name of both of corral's tables.
pub const TABLE_NAME: &str = "corral";

/// One of corral's own tables. Nothing else is ever touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `table inet corral`: masquerade (and, later, port forwarding).
    Inet,
    /// `table bridge corral`: MAC spoof check.
    Bridge,
}

impl Table {
    /// The nft family keyword.
    pub fn family(self) -> &'static str {
        match self {
            Self::Inet => "inet",
            Self::Bridge => "bridge",
        }
    }
}

/// A set of corral's, with its element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Set {
    /// `masq_src4`: IPv4 container addresses to masquerade.
    MasqSrc4,
    /// `masq_skip4`: `container IPv4 . its subnet`, traffic that keeps its source.
    MasqSkip4,
    /// `masq_src6`: IPv6 container addresses to masquerade.
    MasqSrc6,
    /// `masq_skip6`: `container IPv6 . its subnet`.
    MasqSkip6,
    /// `spoof_ports`: host veths whose frames are checked.
    SpoofPorts,
    /// `spoof_allowed`: `host veth . container MAC`, the only source MAC accepted from that port.
    SpoofAllowed,
}

impl Set {
    /// Every set, in declaration order.
    pub const ALL: [Set; 6] = [
        Self::MasqSrc4,
        Self::MasqSkip4,
        Self::MasqSrc6,
        Self::MasqSkip6,
        Self::SpoofPorts,
        Self::SpoofAllowed,
    ];

    /// The set's name in its table.
    pub fn name(self) -> &'static str {
        match self {
            Self::MasqSrc4 => "masq_src4",
            Self::MasqSkip4 => "masq_skip4",
            Self::MasqSrc6 => "masq_src6",
            Self::MasqSkip6 => "masq_skip6",
            Self::SpoofPorts => "spoof_ports",
            Self::SpoofAllowed => "spoof_allowed",
        }
    }

    /// The table the set lives in.
    pub fn table(self) -> Table {
        match self {
            Self::SpoofPorts | Self::SpoofAllowed => Table::Bridge,
            _ => Table::Inet,
        }
    }

    /// The body of the set declaration (`type …; flags …;`).
    pub fn declaration(self) -> &'static str {
        match self {
            Self::MasqSrc4 => "type ipv4_addr;",
            Self::MasqSkip4 => "type ipv4_addr . ipv4_addr; flags interval;",
            Self::MasqSrc6 => "type ipv6_addr;",
            Self::MasqSkip6 => "type ipv6_addr . ipv6_addr; flags interval;",
            Self::SpoofPorts => "type ifname;",
            Self::SpoofAllowed => "type ifname . ether_addr;",
        }
    }
}

/// One element of one of corral's sets. Subnets are kept with their host bits cleared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Element {
    /// Masquerade traffic from this address.
    MasqSource(IpAddr),
    /// Except when it goes from `ip` to `subnet`.
    MasqSkip {
        /// Container address.
        ip: IpAddr,
        /// Its subnet (network address, prefix).
        subnet: IpNet,
    },
    /// Check source MACs of frames arriving on this bridge port.
    SpoofPort(String),
    /// The MAC allowed on that port.
    SpoofAllowed {
        /// Host veth.
        port: String,
        /// Container MAC.
        mac: [u8; 6],
    },
}

impl Element {
    /// The set holding this element.
    pub fn set(&self) -> Set {
        match self {
            Self::MasqSource(IpAddr::V4(_)) => Set::MasqSrc4,
            Self::MasqSource(IpAddr::V6(_)) => Set::MasqSrc6,
            Self::MasqSkip {
                ip: IpAddr::V4(_), ..
            } => Set::MasqSkip4,
            Self::MasqSkip {
                ip: IpAddr::V6(_), ..
            } => Set::MasqSkip6,
            Self::SpoofPort(_) => Set::SpoofPorts,
            Self::SpoofAllowed { .. } => Set::SpoofAllowed,
        }
    }

    /// The element's key in nft text syntax. Names were validated (no quotes), so quoting is plain.
    pub fn key(&self) -> String {
        match self {
            Self::MasqSource(ip) => ip.to_string(),
            Self::MasqSkip { ip, subnet } => format!("{ip} . {subnet}"),
            Self::SpoofPort(port) => format!("\"{port}\""),
            Self::SpoofAllowed { port, mac } => format!("\"{port}\" . {}", format_mac(mac)),
        }
    }

    /// Two elements that nft would refuse to hold together: interval keys that overlap without being equal
    /// (`10.1.0.2 . 10.1.0.0/24` and `10.1.0.2 . 10.1.0.0/16` fail with "File exists").
    pub fn overlaps(&self, other: &Element) -> bool {
        match (self, other) {
            (Self::MasqSkip { ip: a, subnet: s }, Self::MasqSkip { ip: b, subnet: t }) => {
                a == b && (s.contains(t) || t.contains(s))
            }
            _ => self == other,
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.set();
        write!(
            f,
            "{} {} {} {{ {} }}",
            set.table().family(),
            TABLE_NAME,
            set.name(),
            self.key()
        )
    }
}

/// The elements a record asks for, deduplicated, in record order.
pub fn record_elements(record: &AttachmentRecord) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    let mut push = |e: Element| {
        if !out.contains(&e) {
            out.push(e);
        }
    };
    for entry in &record.masq {
        push(Element::MasqSource(entry.ip));
        push(Element::MasqSkip {
            ip: entry.ip,
            subnet: entry.subnet.trunc(),
        });
    }
    if let Some(spoof) = &record.spoof {
        push(Element::SpoofPort(spoof.host_ifname.clone()));
        push(Element::SpoofAllowed {
            port: spoof.host_ifname.clone(),
            mac: spoof.mac,
        });
    }
    out
}

/// Elements that other live records claim; removing an attachment leaves these in place.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    elements: HashSet<Element>,
}

impl Claims {
    /// The claims of every record in `others`.
    pub fn from_records<'a>(others: impl IntoIterator<Item = &'a AttachmentRecord>) -> Self {
        Self {
            elements: others.into_iter().flat_map(record_elements).collect(),
        }
    }

    /// True when another record claims `element` or an element that overlaps it (removing ours would then
    /// either delete theirs or fail the transaction).
    pub fn covers(&self, element: &Element) -> bool {
        match element {
            Element::MasqSkip { .. } => self.elements.iter().any(|e| e.overlaps(element)),
            _ => self.elements.contains(element),
        }
    }
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

    #[test]
    fn record_expands_to_elements_with_truncated_subnets() {
        let mut r = AttachmentRecord::new(Owner::new("n", "c", "eth0"));
        r.masq = vec![
            masq("10.1.0.2", "10.1.0.2/24"),
            masq("fd00::2", "fd00::2/64"),
            masq("10.1.0.2", "10.1.0.0/24"),
        ];
        r.spoof = Some(SpoofEntry {
            host_ifname: "veth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
        });
        let keys: Vec<String> = record_elements(&r).iter().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            [
                "inet corral masq_src4 { 10.1.0.2 }",
                "inet corral masq_skip4 { 10.1.0.2 . 10.1.0.0/24 }",
                "inet corral masq_src6 { fd00::2 }",
                "inet corral masq_skip6 { fd00::2 . fd00::/64 }",
                "bridge corral spoof_ports { \"veth0\" }",
                "bridge corral spoof_allowed { \"veth0\" . 02:00:00:00:00:01 }",
            ]
        );
    }

    #[test]
    fn claims_cover_equal_keys_and_overlapping_intervals() {
        let mut other = AttachmentRecord::new(Owner::new("n", "other", "eth0"));
        other.masq = vec![masq("10.1.0.2", "10.1.0.0/16")];
        let claims = Claims::from_records([&other]);
        let ip = "10.1.0.2".parse().unwrap();
        assert!(claims.covers(&Element::MasqSource(ip)));
        assert!(claims.covers(&Element::MasqSkip {
            ip,
            subnet: "10.1.0.0/24".parse().unwrap()
        }));
        assert!(!claims.covers(&Element::MasqSkip {
            ip,
            subnet: "10.2.0.0/24".parse().unwrap()
        }));
        assert!(!claims.covers(&Element::MasqSource("10.1.0.3".parse().unwrap())));
    }
}
