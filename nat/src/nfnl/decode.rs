//! Raw set-element bytes ↔ [`Element`]s, per set type: [`decode`] reads dumps, [`encode`] writes the keys
//! removals send (one place for both directions of every layout). Concatenations are register-aligned: each field is
//! padded to a multiple of 4 bytes (`inet_proto` 1 byte, `inet_service` 2 bytes big-endian, `ipv4_addr` 4,
//! `ipv6_addr` 16, `ifname` 16 NUL-padded, `ether_addr` 6). Interval elements carry the range's last key in
//! `key_end`; a range that is a prefix becomes an [`IpNet`], anything else is skipped, like the JSON reader
//! skips nft's `range` form. Elements of a shape we do not expect are skipped, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{RawElement, ELEM_CATCHALL, ELEM_INTERVAL_END};
use crate::element::{Element, Set};
use crate::model::Protocol;

/// The element `raw` is in `set`, or `None` for end-of-interval markers, catch-alls and unknown shapes.
pub fn decode(set: Set, raw: &RawElement) -> Option<Element> {
    if raw.flags & (ELEM_INTERVAL_END | ELEM_CATCHALL) != 0 {
        return None;
    }
    let mut key = Fields::new(&raw.key);
    let element = match set {
        Set::MasqSrc4 => Element::MasqSource(key.v4()?),
        Set::MasqSrc6 => Element::MasqSource(key.v6()?),
        Set::MasqSkip4 | Set::MasqSkip6 => {
            let v4 = set == Set::MasqSkip4;
            let mut end = Fields::new(raw.key_end.as_deref()?);
            let ip = key.ip(v4)?;
            (end.ip(v4)? == ip).then_some(())?;
            let subnet = prefix(key.ip(v4)?, end.ip(v4)?)?;
            end.done()?;
            Element::MasqSkip { ip, subnet }
        }
        Set::DnatMasq4 | Set::DnatMasq6 => {
            let v4 = set == Set::DnatMasq4;
            let mut end = Fields::new(raw.key_end.as_deref()?);
            let source = prefix(key.ip(v4)?, end.ip(v4)?)?;
            let dest = key.ip(v4)?;
            (end.ip(v4)? == dest).then_some(())?;
            end.done()?;
            Element::DnatMasq { source, dest }
        }
        Set::SpoofPorts => Element::SpoofPort(key.ifname()?),
        Set::SpoofAllowed => Element::SpoofAllowed {
            port: key.ifname()?,
            mac: key.mac()?,
        },
        Set::HostPorts4 | Set::HostIpPorts4 | Set::HostPorts6 | Set::HostIpPorts6 => {
            let v4 = matches!(set, Set::HostPorts4 | Set::HostIpPorts4);
            let protocol = key.protocol()?;
            let host_ip = match set {
                Set::HostIpPorts4 | Set::HostIpPorts6 => Some(key.ip(v4)?),
                _ => None,
            };
            let port = key.port()?;
            let mut data = Fields::new(raw.data.as_deref()?);
            let element = Element::HostPort {
                protocol,
                host_ip,
                port,
                dest: data.ip(v4)?,
                dest_port: data.port()?,
            };
            data.done()?;
            element
        }
    };
    key.done()?;
    Some(element)
}

/// The bytes of `element` as the kernel holds them in its set: the key, for interval sets the range's last
/// key in `key_end` (no `ELEM_INTERVAL_END` flag: our interval sets are concatenations), for maps the data.
/// The inverse of [`decode`].
pub fn encode(element: &Element) -> RawElement {
    let mut key = Vec::new();
    let mut key_end = None;
    let mut data = None;
    match element {
        Element::MasqSource(ip) => put_ip(&mut key, *ip),
        Element::MasqSkip { ip, subnet } => {
            let mut end = Vec::new();
            put_ip(&mut key, *ip);
            put_ip(&mut key, subnet.network());
            put_ip(&mut end, *ip);
            put_ip(&mut end, subnet.broadcast());
            key_end = Some(end);
        }
        Element::DnatMasq { source, dest } => {
            let mut end = Vec::new();
            put_ip(&mut key, source.network());
            put_ip(&mut key, *dest);
            put_ip(&mut end, source.broadcast());
            put_ip(&mut end, *dest);
            key_end = Some(end);
        }
        Element::SpoofPort(port) => put_ifname(&mut key, port),
        Element::SpoofAllowed { port, mac } => {
            put_ifname(&mut key, port);
            put_field(&mut key, mac);
        }
        Element::HostPort {
            protocol,
            host_ip,
            port,
            dest,
            dest_port,
        } => {
            put_field(&mut key, &[protocol_number(*protocol)]);
            if let Some(host_ip) = host_ip {
                put_ip(&mut key, *host_ip);
            }
            put_field(&mut key, &port.to_be_bytes());
            let mut value = Vec::new();
            put_ip(&mut value, *dest);
            put_field(&mut value, &dest_port.to_be_bytes());
            data = Some(value);
        }
    }
    RawElement {
        key,
        key_end,
        data,
        ..RawElement::default()
    }
}

/// One field of a concatenation, padded to the next 4-byte register boundary.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize((out.len() + 3) & !3, 0);
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => put_field(out, &v4.octets()),
        IpAddr::V6(v6) => put_field(out, &v6.octets()),
    }
}

/// `ifname`: the name NUL-padded to IFNAMSIZ (16) bytes (validated names are at most 15 bytes; a longer one
/// is cut rather than overflowing the field, and then matches nothing).
fn put_ifname(out: &mut Vec<u8>, name: &str) {
    let mut field = [0u8; 16];
    let bytes = name.as_bytes();
    let len = bytes.len().min(15);
    field[..len].copy_from_slice(&bytes[..len]);
    put_field(out, &field);
}

/// The IP protocol number of `protocol` (`inet_proto`).
fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// `start..=end` as a prefix (`/32` or `/128` when they are equal), `None` when it is not one.
fn prefix(start: IpAddr, end: IpAddr) -> Option<IpNet> {
    match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => {
            let (s, e) = (u32::from(s), u32::from(e));
            let host = s ^ e;
            let ok = host & host.wrapping_add(1) == 0 && s & host == 0;
            ok.then(|| IpNet::new(IpAddr::V4(s.into()), 32 - host.count_ones() as u8).ok())?
        }
        (IpAddr::V6(s), IpAddr::V6(e)) => {
            let (s, e) = (u128::from(s), u128::from(e));
            let host = s ^ e;
            let ok = host & host.wrapping_add(1) == 0 && s & host == 0;
            ok.then(|| IpNet::new(IpAddr::V6(s.into()), 128 - host.count_ones() as u8).ok())?
        }
        _ => None,
    }
}

/// Reads register-aligned fields off a concatenated key.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next field of `len` bytes (consuming its padding to 4 bytes).
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let field = self.rest.get(..len)?;
        let padded = len.checked_add(3)? & !3;
        self.rest = self.rest.get(padded..)?;
        Some(field)
    }

    /// `Some` when every byte was consumed.
    fn done(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }

    fn v4(&mut self) -> Option<IpAddr> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    }

    fn v6(&mut self) -> Option<IpAddr> {
        let b: [u8; 16] = self.take(16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    }

    fn ip(&mut self, v4: bool) -> Option<IpAddr> {
        if v4 {
            self.v4()
        } else {
            self.v6()
        }
    }

    fn port(&mut self) -> Option<u16> {
        let b: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(u16::from_be_bytes(b))
    }

    fn protocol(&mut self) -> Option<Protocol> {
        let [number] = self.take(1)? else {
            return None;
        };
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| protocol_number(*p) == *number)
    }

    /// `ifname`: IFNAMSIZ (16) bytes, NUL-padded.
    fn ifname(&mut self) -> Option<String> {
        let bytes = self.take(16)?;
        let name = bytes.split(|b| *b == 0).next()?;
        String::from_utf8(name.to_vec()).ok().filter(|n| !n.is_empty())
    }

    fn mac(&mut self) -> Option<[u8; 6]> {
        self.take(6)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: &[u8], key_end: Option<&[u8]>, data: Option<&[u8]>) -> RawElement {
        RawElement {
            key: key.to_vec(),
            key_end: key_end.map(<[u8]>::to_vec),
            data: data.map(<[u8]>::to_vec),
            ..RawElement::default()
        }
    }

    #[test]
    fn ranges_become_prefixes_or_are_refused() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            prefix(ip("10.1.0.0"), ip("10.1.255.255")),
            "10.1.0.0/16".parse().ok()
        );
        assert_eq!(prefix(ip("10.1.0.3"), ip("10.1.0.3")), "10.1.0.3/32".parse().ok());
        assert_eq!(
            prefix(ip("0.0.0.0"), ip("255.255.255.255")),
            "0.0.0.0/0".parse().ok()
        );
        assert_eq!(
            prefix(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            "::/0".parse().ok()
        );
        assert_eq!(
            prefix(ip("fd00::"), ip("fd00::ffff:ffff:ffff:ffff")),
            "fd00::/64".parse().ok()
        );
        assert_eq!(prefix(ip("10.1.0.1"), ip("10.1.0.7")), None, "not aligned");
        assert_eq!(prefix(ip("10.1.0.0"), ip("10.1.0.5")), None, "not a power of two");
        assert_eq!(prefix(ip("10.1.0.0"), ip("fd00::")), None);
    }

    #[test]
    fn malformed_keys_are_skipped_without_panicking() {
        let cases: [(Set, RawElement); 7] = [
            (Set::MasqSrc4, raw(&[10, 0, 0], None, None)),
            (Set::MasqSrc4, raw(&[10, 0, 0, 1, 0], None, None)),
            (Set::MasqSkip4, raw(&[10, 0, 0, 2, 10, 0, 0, 0], None, None)),
            (Set::HostPorts4, raw(&[6, 0, 0, 0, 0x1f, 0x90, 0, 0], None, None)),
            (
                Set::HostPorts4,
                raw(
                    &[99, 0, 0, 0, 0x1f, 0x90, 0, 0],
                    None,
                    Some(&[10, 0, 0, 2, 0, 80, 0, 0]),
                ),
            ),
            (Set::SpoofPorts, raw(&[0; 16], None, None)),
            (Set::SpoofAllowed, raw(&[b'v'; 20], None, None)),
        ];
        for (set, raw) in cases {
            assert_eq!(decode(set, &raw), None, "{set:?} {raw:?}");
        }
        let mut end = raw(&[10, 0, 0, 2], None, None);
        end.flags = ELEM_INTERVAL_END;
        assert_eq!(decode(Set::MasqSrc4, &end), None);
    }

    #[test]
    fn decodes_register_aligned_concatenations() {
        let key = [17, 0, 0, 0, 192, 168, 0, 1, 0x14, 0xe9, 0, 0];
        let data = [10, 88, 0, 2, 0, 53, 0, 0];
        let got = decode(Set::HostIpPorts4, &raw(&key, None, Some(&data))).unwrap();
        assert_eq!(
            got.to_string(),
            "inet corral hostip_ports4 { udp . 192.168.0.1 . 5353 : 10.88.0.2 . 53 }"
        );
        let mut ifname = [0u8; 16];
        ifname[..6].copy_from_slice(b"veth0a");
        let mut key = ifname.to_vec();
        key.extend_from_slice(&[2, 0x42, 0xac, 0x11, 0, 2, 0, 0]);
        let got = decode(Set::SpoofAllowed, &raw(&key, None, None)).unwrap();
        assert_eq!(
            got.to_string(),
            "bridge corral spoof_allowed { \"veth0a\" . 02:42:ac:11:00:02 }"
        );
    }
}
