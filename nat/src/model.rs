//! The NAT model: who owns an attachment and what NAT state it asked for. Plain data, validated before it goes
//! into a file name or an nft script.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::NatError;

/// The owner of NAT state: one attachment of one container to one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// CNI network name.
    pub network: String,
    /// CNI container id.
    pub container_id: String,
    /// Interface name inside the container (CNI_IFNAME).
    pub ifname: String,
}

impl Owner {
    /// Builds an owner from its three parts.
    pub fn new(
        network: impl Into<String>,
        container_id: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Self {
        Self {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    /// Refuses names that could escape the state directory or an nft quoted string.
    pub fn validate(&self) -> Result<(), NatError> {
        validate_name("network", &self.network, 255)?;
        validate_name("container id", &self.container_id, 255)?;
        validate_ifname("ifname", &self.ifname)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.network, self.container_id, self.ifname)
    }
}

/// Masquerade one container address, except towards its own subnet (and multicast).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MasqEntry {
    /// The container address whose traffic is masqueraded.
    pub ip: IpAddr,
    /// The container's subnet: traffic to it keeps its source address. Host bits are ignored.
    pub subnet: IpNet,
}

/// Drop frames entering the bridge from `host_ifname` whose source MAC is not `mac`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpoofEntry {
    /// Host-side veth (the bridge port).
    pub host_ifname: String,
    /// The container interface's MAC address.
    #[serde(with = "mac_text")]
    pub mac: [u8; 6],
}

/// Which plugin wrote a record. A record's identity is `(owner, source)`: the bridge and portmap plugins keep
/// separate records for the same attachment, and each one's DEL removes only its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The bridge plugin (ipMasq, macspoofchk).
    #[default]
    Bridge,
    /// The portmap plugin (port forwarding).
    Portmap,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 2] = [Self::Bridge, Self::Portmap];

    /// The name used in record file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Portmap => "portmap",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport protocol a host port can be forwarded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 3] = [Self::Tcp, Self::Udp, Self::Sctp];

    /// nft's (and conntrack's) name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// Parses a protocol name, case-insensitively (`TCP`, `udp`, `Sctp`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One forwarded host port: `protocol` traffic to `host_ip:host_port` (every local address of the container
/// address's family when `host_ip` is `None` or unspecified) goes to `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Host address the port is published on; `None` (or `0.0.0.0`/`::`) for every local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// Host port (1-65535).
    pub host_port: u16,
    /// Container address; its family decides which map the mapping lives in.
    pub container_ip: IpAddr,
    /// Container port (1-65535).
    pub container_port: u16,
}

impl PortMapping {
    /// The host address, with the unspecified address meaning "every address" like `None`.
    pub fn specific_host_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    /// Whether this mapping and `other` want the same host port: same protocol, same family, same port, and
    /// the same host address or either on every address.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && self.container_ip.is_ipv4() == other.container_ip.is_ipv4()
            && match (self.specific_host_ip(), other.specific_host_ip()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// `tcp 8080 on 10.0.0.1` / `tcp 8080 on all IPv4 addresses`, for messages.
    pub fn host_side(&self) -> String {
        match self.specific_host_ip() {
            Some(ip) => format!("{} {} on {ip}", self.protocol, self.host_port),
            None if self.container_ip.is_ipv4() => {
                format!("{} {} on all IPv4 addresses", self.protocol, self.host_port)
            }
            None => format!("{} {} on all IPv6 addresses", self.protocol, self.host_port),
        }
    }
}

/// The portmap plugin's state for one attachment: the mappings and how to masquerade DNATed connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForwarding {
    /// The forwarded ports.
    #[serde(default)]
    pub mappings: Vec<PortMapping>,
    /// The container's subnets (one per family): DNATed connections from there are masqueraded (hairpin).
    #[serde(default)]
    pub subnets: Vec<IpNet>,
    /// Masquerade hairpin and localhost connections (portmap `snat`, default true).
    #[serde(default)]
    pub snat: bool,
    /// Masquerade every DNATed connection to the container (portmap `masqAll`; only with `snat`).
    #[serde(default)]
    pub masq_all: bool,
}

/// Everything corral's NAT manager keeps for one attachment and one plugin; stored as one JSON file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    /// Who this state belongs to.
    pub owner: Owner,
    /// Which plugin wrote it (part of the record's identity).
    #[serde(default)]
    pub source: Source,
    /// Addresses to masquerade (ipMasq).
    #[serde(default)]
    pub masq: Vec<MasqEntry>,
    /// MAC spoof check (macspoofchk).
    #[serde(default)]
    pub spoof: Option<SpoofEntry>,
    /// Port forwarding (portmap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortForwarding>,
    /// The container's netns path at ADD time, for GC and diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// `/proc/sys/kernel/random/boot_id` at ADD time: a record from an earlier boot has no kernel state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Inode of the netns at ADD time: a path that now names another namespace is not this attachment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_ino: Option<u64>,
}

impl AttachmentRecord {
    /// A bridge record with no NAT state yet.
    pub fn new(owner: Owner) -> Self {
        Self::with_source(owner, Source::Bridge)
    }

    /// A record of `source` with no NAT state yet.
    pub fn with_source(owner: Owner, source: Source) -> Self {
        Self {
            owner,
            source,
            masq: Vec::new(),
            spoof: None,
            ports: None,
            netns: None,
            boot_id: None,
            netns_ino: None,
        }
    }

    /// The port mappings (empty when there is no port forwarding).
    pub fn mappings(&self) -> &[PortMapping] {
        self.ports.as_ref().map_or(&[], |p| p.mappings.as_slice())
    }

    /// Checks the owner, that each masq address and subnet are of one family, and the host ifname.
    pub fn validate(&self) -> Result<(), NatError> {
        self.owner.validate()?;
        for entry in &self.masq {
            if entry.ip.is_ipv4() != entry.subnet.addr().is_ipv4() {
                return Err(NatError::InvalidData {
                    field: "masq subnet",
                    value: format!("{} for {}", entry.subnet, entry.ip),
                    reason: "address and subnet are of different families",
                });
            }
        }
        if let Some(spoof) = &self.spoof {
            validate_ifname("host ifname", &spoof.host_ifname)?;
        }
        if let Some(ports) = &self.ports {
            validate_ports(ports)?;
        }
        Ok(())
    }
}

fn validate_ports(ports: &PortForwarding) -> Result<(), NatError> {
    let bad = |m: &PortMapping, reason| {
        Err(NatError::InvalidData {
            field: "port mapping",
            value: format!("{} to {}:{}", m.host_side(), m.container_ip, m.container_port),
            reason,
        })
    };
    for (i, m) in ports.mappings.iter().enumerate() {
        if m.host_port == 0 || m.container_port == 0 {
            return bad(m, "ports must be between 1 and 65535");
        }
        if m.host_ip.is_some_and(|h| h.is_ipv4() != m.container_ip.is_ipv4()) {
            return bad(m, "host and container addresses are of different families");
        }
        if ports.mappings[..i].iter().any(|o| o != m && o.conflicts_with(m)) {
            return bad(m, "another mapping of the same attachment uses that host port");
        }
    }
    if let Some(net) = ports.subnets.iter().find(|n| {
        !ports
            .mappings
            .iter()
            .all(|m| m.container_ip.is_ipv4() != n.addr().is_ipv4() || n.contains(&m.container_ip))
    }) {
        return Err(NatError::InvalidData {
            field: "container subnet",
            value: net.to_string(),
            reason: "does not contain the container address of its family",
        });
    }
    Ok(())
}

/// Formats a MAC the way nft prints `ether_addr` values.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// CNI network names and container ids: `[A-Za-z0-9][A-Za-z0-9_.-]*` (the spec's own patterns).
fn validate_name(field: &'static str, value: &str, max: usize) -> Result<(), NatError> {
    let bad = |reason| {
        Err(NatError::InvalidData {
            field,
            value: value.to_owned(),
            reason,
        })
    };
    let Some(first) = value.chars().next() else {
        return bad("must not be empty");
    };
    if value.len() > max {
        return bad("too long");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return bad("may only contain letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Linux interface names (at most 15 bytes, not `.`/`..`, no `/`, `:` or whitespace), further limited to
/// printable ASCII without quotes or backslashes so the name is safe inside an nft quoted string.
fn validate_ifname(field: &'static str, value: &str) -> Result<(), NatError> {
    let bad = |reason| {
        Err(NatError::InvalidData {
            field,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() || value.len() > 15 {
        return bad("must be 1 to 15 bytes long");
    }
    if value == "." || value == ".." {
        return bad("is not a valid interface name");
    }
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, '/' | ':' | '"' | '\\');
    if !value.chars().all(allowed) {
        return bad("may only contain printable ASCII other than '/', ':', '\"' and '\\'");
    }
    Ok(())
}

/// Serde for `[u8; 6]` as `aa:bb:cc:dd:ee:ff`.
mod mac_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_mac(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let text = String::deserialize(d)?;
        super::parse_mac(&text).ok_or_else(|| D::Error::custom(format!("invalid MAC address {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AttachmentRecord {
        AttachmentRecord {
            owner: Owner::new("net1", "abc123", "eth0"),
            masq: vec![MasqEntry {
                ip: "10.1.0.2".parse().unwrap(),
                subnet: "10.1.0.0/24".parse().unwrap(),
            }],
            spoof: Some(SpoofEntry {
                host_ifname: "veth1a2b".into(),
                mac: [2, 0x11, 0x22, 0x33, 0x44, 0xaa],
            }),
            ports: None,
            netns: None,
            boot_id: None,
            netns_ino: None,
            source: Source::Bridge,
        }
    }

    #[test]
    fn record_json_uses_camel_case_and_text_mac() {
        let json = serde_json::to_value(record()).unwrap();
        assert_eq!(json["owner"]["containerId"], "abc123");
        assert_eq!(json["spoof"]["hostIfname"], "veth1a2b");
        assert_eq!(json["spoof"]["mac"], "02:11:22:33:44:aa");
        assert_eq!(json["masq"][0]["subnet"], "10.1.0.0/24");
        let back: AttachmentRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record());
    }

    #[test]
    fn record_without_optional_fields_parses() {
        let json = r#"{"owner":{"network":"n","containerId":"c","ifname":"eth0"},"futureField":1}"#;
        let back: AttachmentRecord = serde_json::from_str(json).unwrap();
        assert!(back.masq.is_empty() && back.spoof.is_none());
    }

    #[test]
    fn mac_parsing_rejects_malformed_text() {
        assert_eq!(parse_mac("02:AB:cd:00:01:ff"), Some([2, 0xab, 0xcd, 0, 1, 0xff]));
        for bad in [
            "",
            "02:ab:cd:00:01",
            "02:ab:cd:00:01:ff:00",
            "2:ab:cd:00:01:ff",
            "zz:ab:cd:00:01:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_refuses_path_and_script_injection() {
        assert!(record().validate().is_ok());
        type Mutation = fn(&mut AttachmentRecord);
        let cases: [(&str, Mutation); 7] = [
            ("network with slash", |r| r.owner.network = "../etc".into()),
            ("empty container id", |r| r.owner.container_id = String::new()),
            ("container id with space", |r| r.owner.container_id = "a b".into()),
            ("ifname too long", |r| r.owner.ifname = "a".repeat(16)),
            ("ifname dot-dot", |r| r.owner.ifname = "..".into()),
            ("host ifname with quote", |r| {
                r.spoof.as_mut().unwrap().host_ifname = "v\"; flush".into()
            }),
            ("mixed families", |r| {
                r.masq[0].subnet = "fd00::/64".parse().unwrap()
            }),
        ];
        for (name, mutate) in cases {
            let mut r = record();
            mutate(&mut r);
            let err = r.validate().expect_err(name);
            assert_eq!(err.code(), 7, "{name}: {err}");
        }
    }
}
