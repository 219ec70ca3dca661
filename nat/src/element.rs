//! Set elements: the unit of per-attachment kernel state. A record expands into elements; the planner turns
//! elements into nft text; `inspect` turns the kernel's JSON back into elements, so CHECK compares like with
//! like.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{format_mac, AttachmentRecord, Protocol};

/// 127.0.0.0/8: DNATed connections from here (localhost → published port) are masqueraded.
pub const LOCALHOST_V4: ipnet::Ipv4Net = ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8);

/// The name of both of corral's tables.
pub const TABLE_NAME: &str = "corral";

/// One of corral's own tables. Nothing else is ever touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `table inet corral`: masquerade and port forwarding.
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

/// A set or map of corral's, with its element type.
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
    /// Map `hostports4`: `proto . port : container IPv4 . port`, for every local IPv4 address.
    HostPorts4,
    /// Map `hostip_ports4`: `proto . host IPv4 . port : container IPv4 . port`.
    HostIpPorts4,
    /// Map `hostports6`: `proto . port : container IPv6 . port`, for every local IPv6 address.
    HostPorts6,
    /// Map `hostip_ports6`: `proto . host IPv6 . port : container IPv6 . port`.
    HostIpPorts6,
    /// `dnat_masq4`: `source range . container IPv4`, DNATed connections to masquerade (hairpin, localhost,
    /// masqAll).
    DnatMasq4,
    /// `dnat_masq6`: `source range . container IPv6`.
    DnatMasq6,
}

impl Set {
    /// Every set and map, in declaration order.
    pub const ALL: [Set; 12] = [
        Self::MasqSrc4,
        Self::MasqSkip4,
        Self::MasqSrc6,
        Self::MasqSkip6,
        Self::SpoofPorts,
        Self::SpoofAllowed,
        Self::HostPorts4,
        Self::HostIpPorts4,
        Self::HostPorts6,
        Self::HostIpPorts6,
        Self::DnatMasq4,
        Self::DnatMasq6,
    ];

    /// Whether this is a map (elements carry data after `:`), declared with `add map`.
    pub fn is_map(self) -> bool {
        matches!(
            self,
            Self::HostPorts4 | Self::HostIpPorts4 | Self::HostPorts6 | Self::HostIpPorts6
        )
    }

    /// `set` or `map`, the keyword nft declares and lists it with.
    pub fn kind(self) -> &'static str {
        if self.is_map() {
            "map"
        } else {
            "set"
        }
    }

    /// The set's name in its table.
    pub fn name(self) -> &'static str {
        match self {
            Self::MasqSrc4 => "masq_src4",
            Self::MasqSkip4 => "masq_skip4",
            Self::MasqSrc6 => "masq_src6",
            Self::MasqSkip6 => "masq_skip6",
            Self::SpoofPorts => "spoof_ports",
            Self::SpoofAllowed => "spoof_allowed",
            Self::HostPorts4 => "hostports4",
            Self::HostIpPorts4 => "hostip_ports4",
            Self::HostPorts6 => "hostports6",
            Self::HostIpPorts6 => "hostip_ports6",
            Self::DnatMasq4 => "dnat_masq4",
            Self::DnatMasq6 => "dnat_masq6",
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
            // Maps with concatenated data must be declared in text: nft 1.0.6's JSON parser creates a plain set
            // (or crashes). `counter` gives every element its own counters for `list-nat`.
            Self::HostPorts4 => "type inet_proto . inet_service : ipv4_addr . inet_service; counter;",
            Self::HostIpPorts4 => {
                "type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service; counter;"
            }
            Self::HostPorts6 => "type inet_proto . inet_service : ipv6_addr . inet_service; counter;",
            Self::HostIpPorts6 => {
                "type inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service; counter;"
            }
            Self::DnatMasq4 => "type ipv4_addr . ipv4_addr; flags interval;",
            Self::DnatMasq6 => "type ipv6_addr . ipv6_addr; flags interval;",
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
    /// A forwarded host port (a map element).
    HostPort {
        /// Transport protocol.
        protocol: Protocol,
        /// A specific host address, or `None` for every local address of `dest`'s family.
        host_ip: Option<IpAddr>,
        /// Host port.
        port: u16,
        /// Container address.
        dest: IpAddr,
        /// Container port.
        dest_port: u16,
    },
    /// Masquerade DNATed connections from `source` to `dest`.
    DnatMasq {
        /// Where the connection comes from (the container's subnet, 127.0.0.0/8, or everything).
        source: IpNet,
        /// The container address it was DNATed to.
        dest: IpAddr,
    },
}

impl Element {
    /// What two overlapping elements share: the address of interval elements, the whole key of map elements,
    /// the element itself otherwise. Elements with different overlap keys never overlap, so callers can index
    /// by it instead of comparing every pair.
    pub fn overlap_key(&self) -> Element {
        match self {
            Self::MasqSkip { ip, .. } => Self::MasqSource(*ip),
            Self::DnatMasq { dest, .. } => Self::MasqSource(*dest),
            Self::HostPort {
                protocol,
                host_ip,
                port,
                dest,
                ..
            } => Self::HostPort {
                protocol: *protocol,
                host_ip: *host_ip,
                port: *port,
                dest: if dest.is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                },
                dest_port: 0,
            },
            other => other.clone(),
        }
    }

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
            Self::HostPort { host_ip, dest, .. } => match (dest.is_ipv4(), host_ip.is_some()) {
                (true, false) => Set::HostPorts4,
                (true, true) => Set::HostIpPorts4,
                (false, false) => Set::HostPorts6,
                (false, true) => Set::HostIpPorts6,
            },
            Self::DnatMasq { dest, .. } if dest.is_ipv4() => Set::DnatMasq4,
            Self::DnatMasq { .. } => Set::DnatMasq6,
        }
    }

    /// The element's key in nft text syntax. Names were validated (no quotes), so quoting is plain.
    pub fn key(&self) -> String {
        match self {
            Self::MasqSource(ip) => ip.to_string(),
            Self::MasqSkip { ip, subnet } => format!("{ip} . {subnet}"),
            Self::SpoofPort(port) => format!("\"{port}\""),
            Self::SpoofAllowed { port, mac } => format!("\"{port}\" . {}", format_mac(mac)),
            Self::HostPort {
                protocol,
                host_ip: Some(host),
                port,
                ..
            } => format!("{protocol} . {host} . {port}"),
            Self::HostPort { protocol, port, .. } => format!("{protocol} . {port}"),
            Self::DnatMasq { source, dest } => format!("{source} . {dest}"),
        }
    }

    /// A map element's data (what follows `:`), `None` for set elements.
    pub fn data(&self) -> Option<String> {
        match self {
            Self::HostPort { dest, dest_port, .. } => Some(format!("{dest} . {dest_port}")),
            _ => None,
        }
    }

    /// Key and data as nft writes an element (`tcp . 8080 : 10.88.0.2 . 80`), with an optional comment
    /// between them as nft's grammar wants it.
    pub fn text(&self, comment: Option<&str>) -> String {
        let mut out = self.key();
        if let Some(c) = comment {
            out.push_str(&format!(" comment \"{c}\""));
        }
        if let Some(data) = self.data() {
            out.push_str(" : ");
            out.push_str(&data);
        }
        out
    }

    /// Two elements that nft would refuse to hold together (or that are equal): interval keys that overlap
    /// (`10.1.0.2 . 10.1.0.0/24` and `10.1.0.2 . 10.1.0.0/16` fail with "File exists"), and map elements
    /// with the same key.
    pub fn overlaps(&self, other: &Element) -> bool {
        match (self, other) {
            (Self::MasqSkip { ip: a, subnet: s }, Self::MasqSkip { ip: b, subnet: t }) => {
                a == b && (s.contains(t) || t.contains(s))
            }
            (Self::DnatMasq { source: s, dest: a }, Self::DnatMasq { source: t, dest: b }) => {
                a == b && (s.contains(t) || t.contains(s))
            }
            (
                Self::HostPort {
                    protocol: p,
                    host_ip: h,
                    port: n,
                    dest: d,
                    ..
                },
                Self::HostPort {
                    protocol: q,
                    host_ip: i,
                    port: m,
                    dest: e,
                    ..
                },
            ) => p == q && h == i && n == m && d.is_ipv4() == e.is_ipv4(),
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
            self.text(None)
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
    if let Some(ports) = &record.ports {
        for m in &ports.mappings {
            push(Element::HostPort {
                protocol: m.protocol,
                host_ip: m.specific_host_ip(),
                port: m.host_port,
                dest: m.container_ip,
                dest_port: m.container_port,
            });
        }
        for source in dnat_masq_sources(ports) {
            push(source);
        }
    }
    out
}

/// The masquerade elements of port forwarding, per container address: everything with `masqAll` (one element
/// covers the others, which nft would refuse as overlapping), else the container's subnet (hairpin) and, for
/// IPv4, 127.0.0.0/8 (localhost); nothing without `snat`.
fn dnat_masq_sources(ports: &crate::model::PortForwarding) -> Vec<Element> {
    let mut out = Vec::new();
    if !ports.snat {
        return out;
    }
    let mut dests: Vec<IpAddr> = ports.mappings.iter().map(|m| m.container_ip).collect();
    dests.sort();
    dests.dedup();
    for dest in dests {
        let any = match dest {
            IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
        };
        if ports.masq_all {
            out.push(Element::DnatMasq { source: any, dest });
            continue;
        }
        for subnet in ports.subnets.iter().filter(|s| s.contains(&dest)) {
            out.push(Element::DnatMasq {
                source: subnet.trunc(),
                dest,
            });
        }
        if dest.is_ipv4() {
            out.push(Element::DnatMasq {
                source: IpNet::V4(LOCALHOST_V4),
                dest,
            });
        }
    }
    out
}

/// Elements that other live records claim; removing an attachment leaves these in place.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    elements: HashSet<Element>,
    by_overlap: std::collections::HashMap<(Set, Element), Vec<Element>>,
}

impl Claims {
    /// The claims of every record in `others`.
    pub fn from_records<'a>(others: impl IntoIterator<Item = &'a AttachmentRecord>) -> Self {
        let mut claims = Self::default();
        for element in others.into_iter().flat_map(record_elements) {
            claims.insert(element);
        }
        claims
    }

    /// Adds one claimed element.
    pub fn insert(&mut self, element: Element) {
        self.by_overlap
            .entry((element.set(), element.overlap_key()))
            .or_default()
            .push(element.clone());
        self.elements.insert(element);
    }

    /// True when `element` itself is claimed.
    pub fn contains(&self, element: &Element) -> bool {
        self.elements.contains(element)
    }

    /// True when another record claims `element` or an element that overlaps it (removing ours would then
    /// either delete theirs or fail the transaction).
    pub fn covers(&self, element: &Element) -> bool {
        match element {
            Element::MasqSkip { .. } | Element::DnatMasq { .. } | Element::HostPort { .. } => self
                .by_overlap
                .get(&(element.set(), element.overlap_key()))
                .is_some_and(|v| v.iter().any(|e| e.overlaps(element))),
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
