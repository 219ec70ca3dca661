//! Reads corral's tables back from `nft -j list table …` output (as `serde_json::Value`, never a typed schema:
//! nft's JSON for concatenated types does not fit one) into [`Element`]s. Shapes we do not recognise are
//! skipped, so a newer nft or a hand-added element cannot break a reader.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::element::{Element, Set};
use crate::model::{parse_mac, Protocol};

/// Per-element counters (maps declared with `counter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets that matched the element (for DNAT maps: the first packet of each connection).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// Elements with their counters (when their set has them), as the listings return them.
pub type CountedElements = Vec<(Element, Option<Counters>)>;

/// Every element of corral's sets and maps found in one table listing (`{"nftables": [...]}`).
pub fn parse_elements(listing: &Value) -> Vec<Element> {
    parse_counted(listing).into_iter().map(|(e, _)| e).collect()
}

/// Like [`parse_elements`], with each element's counters when the set has them.
pub fn parse_counted(listing: &Value) -> CountedElements {
    let Some(objects) = listing.get("nftables").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (kind, set) in objects.iter().filter_map(declared_set) {
        for elem in set.get("elem").and_then(Value::as_array).into_iter().flatten() {
            let parsed = if kind.is_map() {
                // A map element is `[key, data]`; the key carries the comment and counters.
                match elem.as_array().map(Vec::as_slice) {
                    Some([key, data]) => {
                        parse_host_port(kind, unwrap_elem(key), data).map(|e| (e, counters(key)))
                    }
                    _ => None,
                }
            } else {
                parse_element(kind, unwrap_elem(elem)).map(|e| (e, counters(elem)))
            };
            out.extend(parsed);
        }
    }
    out
}

/// `(which set, its JSON)` for a `set` or `map` object of ours in the right family.
fn declared_set(object: &Value) -> Option<(Set, &Value)> {
    let (set, is_map) = match (object.get("set"), object.get("map")) {
        (Some(set), _) => (set, false),
        (None, Some(map)) => (map, true),
        _ => return None,
    };
    let kind = set.get("name").and_then(Value::as_str).and_then(set_by_name)?;
    let family = set.get("family").and_then(Value::as_str);
    (family == Some(kind.table().family()) && kind.is_map() == is_map).then_some((kind, set))
}

fn counters(elem: &Value) -> Option<Counters> {
    let c = elem.get("elem")?.get("counter")?;
    Some(Counters {
        packets: c.get("packets")?.as_u64()?,
        bytes: c.get("bytes")?.as_u64()?,
    })
}

fn parse_host_port(set: Set, key: &Value, data: &Value) -> Option<Element> {
    let parts = key.get("concat")?.as_array()?;
    let (proto, host_ip, port) = match (set, parts.as_slice()) {
        (Set::HostPorts4 | Set::HostPorts6, [proto, port]) => (proto, None, port),
        (Set::HostIpPorts4 | Set::HostIpPorts6, [proto, ip, port]) => {
            (proto, Some(ip.as_str()?.parse::<IpAddr>().ok()?), port)
        }
        _ => return None,
    };
    let [dest, dest_port] = concat2(data)?;
    Some(Element::HostPort {
        protocol: Protocol::parse(proto.as_str()?)?,
        host_ip,
        port: u16::try_from(port.as_u64()?).ok()?,
        dest: dest.as_str()?.parse().ok()?,
        dest_port: u16::try_from(dest_port.as_u64()?).ok()?,
    })
}

/// Names of the objects of one kind (`"set"`, `"chain"`, `"map"`) in a listing.
pub fn object_names(listing: &Value, kind: &str) -> Vec<String> {
    let objects = listing.get("nftables").and_then(Value::as_array);
    objects
        .into_iter()
        .flatten()
        .filter_map(|o| o.get(kind)?.get("name")?.as_str().map(str::to_owned))
        .collect()
}

fn set_by_name(name: &str) -> Option<Set> {
    Set::ALL.into_iter().find(|s| s.name() == name)
}

/// Elements with a comment, timeout or counter are listed as `{"elem": {"val": …, "comment": …}}`.
fn unwrap_elem(value: &Value) -> &Value {
    value.get("elem").and_then(|e| e.get("val")).unwrap_or(value)
}

fn parse_element(set: Set, value: &Value) -> Option<Element> {
    match set {
        Set::HostPorts4 | Set::HostIpPorts4 | Set::HostPorts6 | Set::HostIpPorts6 => None,
        Set::DnatMasq4 | Set::DnatMasq6 => {
            let [source, dest] = concat2(value)?;
            Some(Element::DnatMasq {
                source: parse_net(source)?,
                dest: dest.as_str()?.parse().ok()?,
            })
        }
        Set::MasqSrc4 | Set::MasqSrc6 => Some(Element::MasqSource(value.as_str()?.parse().ok()?)),
        Set::MasqSkip4 | Set::MasqSkip6 => {
            let [ip, subnet] = concat2(value)?;
            let ip: IpAddr = ip.as_str()?.parse().ok()?;
            Some(Element::MasqSkip {
                ip,
                subnet: parse_net(subnet)?,
            })
        }
        Set::SpoofPorts => Some(Element::SpoofPort(value.as_str()?.to_owned())),
        Set::SpoofAllowed => {
            let [port, mac] = concat2(value)?;
            Some(Element::SpoofAllowed {
                port: port.as_str()?.to_owned(),
                mac: parse_mac(mac.as_str()?)?,
            })
        }
    }
}

fn concat2(value: &Value) -> Option<[&Value; 2]> {
    match value.get("concat")?.as_array()?.as_slice() {
        [a, b] => Some([a, b]),
        _ => None,
    }
}

/// A prefix prints as `{"prefix": {"addr", "len"}}`, a host as a bare address, anything else as a range.
fn parse_net(value: &Value) -> Option<IpNet> {
    if let Some(text) = value.as_str() {
        let ip: IpAddr = text.parse().ok()?;
        return Some(IpNet::from(ip));
    }
    let prefix = value.get("prefix")?;
    let addr: IpAddr = prefix.get("addr")?.as_str()?.parse().ok()?;
    let len = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
    IpNet::new(addr, len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim `nft -j list table` output from nft 1.0.6 (one element carries a comment).
    const INET: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "corral", "handle": 1}},
      {"set": {"family": "inet", "name": "masq_src4", "table": "corral", "type": "ipv4_addr", "handle": 1,
        "elem": ["10.1.0.2", {"elem": {"val": "10.1.0.8", "comment": "net1/abc/eth0"}}]}},
      {"set": {"family": "inet", "name": "masq_skip4", "table": "corral", "type": ["ipv4_addr", "ipv4_addr"],
        "handle": 2, "flags": ["interval"], "elem": [{"concat": ["10.1.0.2", {"prefix": {"addr": "10.1.0.0",
        "len": 24}}]}, {"concat": ["10.1.0.3", "10.1.0.3"]}]}},
      {"set": {"family": "inet", "name": "masq_src6", "table": "corral", "type": "ipv6_addr", "handle": 3,
        "elem": ["2001:db8:0:1::3"]}},
      {"set": {"family": "inet", "name": "masq_skip6", "table": "corral", "type": ["ipv6_addr", "ipv6_addr"],
        "handle": 4, "flags": ["interval"], "elem": [{"concat": ["fd00::2", {"prefix": {"addr": "fd00::",
        "len": 64}}]}, {"concat": ["fd00::3", {"range": ["fd00::1", "fd00::7"]}]}]}},
      {"chain": {"family": "inet", "table": "corral", "name": "postrouting", "handle": 5}}]}"#;

    const BRIDGE: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"set": {"family": "bridge", "name": "spoof_ports", "table": "corral", "type": "ifname", "handle": 1,
        "elem": ["veth1234"]}},
      {"set": {"family": "bridge", "name": "spoof_allowed", "table": "corral", "type": ["ifname", "ether_addr"],
        "handle": 2, "elem": [{"concat": ["veth1234", "02:11:22:33:44:55"]}]}}]}"#;

    #[test]
    fn parses_every_set_shape_nft_prints() {
        let inet: Value = serde_json::from_str(INET).unwrap();
        let keys: Vec<String> = parse_elements(&inet).iter().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            [
                "inet corral masq_src4 { 10.1.0.2 }",
                "inet corral masq_src4 { 10.1.0.8 }",
                "inet corral masq_skip4 { 10.1.0.2 . 10.1.0.0/24 }",
                "inet corral masq_skip4 { 10.1.0.3 . 10.1.0.3/32 }",
                "inet corral masq_src6 { 2001:db8:0:1::3 }",
                "inet corral masq_skip6 { fd00::2 . fd00::/64 }",
            ]
        );
        let bridge: Value = serde_json::from_str(BRIDGE).unwrap();
        let keys: Vec<String> = parse_elements(&bridge).iter().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            [
                "bridge corral spoof_ports { \"veth1234\" }",
                "bridge corral spoof_allowed { \"veth1234\" . 02:11:22:33:44:55 }"
            ]
        );
        assert_eq!(object_names(&bridge, "set"), ["spoof_ports", "spoof_allowed"]);
        assert_eq!(object_names(&inet, "chain"), ["postrouting"]);
    }

    /// Verbatim nft 1.0.6 output for the port-forwarding maps and the DNAT masquerade set.
    const PORTS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"map": {"family": "inet", "name": "hostports4", "table": "corral", "type": ["inet_proto", "inet_service"],
        "handle": 1, "map": "ipv4_addr . inet_service", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]},
        "comment": "n/c/eth0", "counter": {"packets": 3, "bytes": 180}}}, {"concat": ["10.88.0.2", 80]}]],
        "stmt": [{"counter": null}]}},
      {"map": {"family": "inet", "name": "hostip_ports4", "table": "corral", "type": ["inet_proto", "ipv4_addr",
        "inet_service"], "handle": 2, "map": "ipv4_addr . inet_service", "elem": [[{"concat": ["udp", "10.0.0.1",
        53]}, {"concat": ["10.88.0.2", 5353]}]]}},
      {"map": {"family": "inet", "name": "hostports6", "table": "corral", "type": ["inet_proto", "inet_service"],
        "handle": 3, "map": "ipv6_addr . inet_service", "elem": [[{"elem": {"val": {"concat": ["sctp", 9]},
        "counter": {"packets": 0, "bytes": 0}}}, {"concat": ["fd00::2", 9]}]]}},
      {"set": {"family": "inet", "name": "dnat_masq4", "table": "corral", "type": ["ipv4_addr", "ipv4_addr"],
        "handle": 5, "flags": ["interval"], "elem": [{"elem": {"val": {"concat": [{"prefix": {"addr":
        "10.88.0.0", "len": 16}}, "10.88.0.2"]}, "comment": "x"}}, {"concat": [{"prefix": {"addr": "127.0.0.0",
        "len": 8}}, "10.88.0.2"]}]}},
      {"set": {"family": "inet", "name": "hostports4", "table": "corral", "elem": ["10.0.0.1"]}}]}"#;

    #[test]
    fn parses_port_maps_with_counters() {
        let v: Value = serde_json::from_str(PORTS).unwrap();
        let got: Vec<(String, Option<Counters>)> = parse_counted(&v)
            .into_iter()
            .map(|(e, c)| (e.to_string(), c))
            .collect();
        let c = |packets, bytes| Some(Counters { packets, bytes });
        assert_eq!(
            got,
            [
                (
                    "inet corral hostports4 { tcp . 8080 : 10.88.0.2 . 80 }".to_owned(),
                    c(3, 180)
                ),
                (
                    "inet corral hostip_ports4 { udp . 10.0.0.1 . 53 : 10.88.0.2 . 5353 }".to_owned(),
                    None
                ),
                (
                    "inet corral hostports6 { sctp . 9 : fd00::2 . 9 }".to_owned(),
                    c(0, 0)
                ),
                (
                    "inet corral dnat_masq4 { 10.88.0.0/16 . 10.88.0.2 }".to_owned(),
                    None
                ),
                (
                    "inet corral dnat_masq4 { 127.0.0.0/8 . 10.88.0.2 }".to_owned(),
                    None
                ),
            ]
        );
    }

    #[test]
    fn foreign_shapes_are_skipped() {
        let v: Value = serde_json::from_str(r#"{"nftables": [{"set": {"family": "inet", "name": "masq_src4",
            "elem": [42, {"weird": 1}]}}, {"set": {"family": "ip", "name": "masq_src4", "elem": ["1.2.3.4"]}}]}"#)
        .unwrap();
        assert!(parse_elements(&v).is_empty());
        assert!(parse_elements(&Value::Null).is_empty());
    }
}
