//! Pure planning: which container addresses a chained portmap serves, the NAT record an ADD asks for, the
//! conntrack flows to flush, and which host interface needs `route_localnet`.

use std::net::IpAddr;
use std::path::Path;

use corral_cni::{CniError, CniResult};
use corral_nat::{AttachmentRecord, Owner, PortForwarding, PortMapping, Protocol, Source};
use corral_netops::{RouteSpec, MAIN_TABLE};
use ipnet::IpNet;

use crate::config::Portmap;

/// The container addresses of the attachment: prevResult IPs whose `interface` points at the interface named
/// `ifname` inside a sandbox (all IPs when none carries an interface index), the first of each family.
pub fn container_addresses(prev: &CniResult, ifname: &str) -> Vec<IpNet> {
    let sandboxed: Vec<usize> = prev
        .interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i.name == ifname && !i.sandbox.is_empty())
        .map(|(n, _)| n)
        .collect();
    let indexed = prev.ips.iter().any(|ip| ip.interface.is_some());
    let mut out: Vec<IpNet> = Vec::new();
    for ip in &prev.ips {
        let ours = !indexed || ip.interface.is_some_and(|i| sandboxed.contains(&i));
        if ours
            && !out
                .iter()
                .any(|o| o.addr().is_ipv4() == ip.address.addr().is_ipv4())
        {
            out.push(ip.address);
        }
    }
    out
}

/// The record an ADD applies: each requested mapping for the container address of its host IP's family, or
/// of every family the container has when no host IP is given. Code 7 naming the entry when a host IP's family
/// has no container address, or when two entries want the same host port.
pub fn build_record(
    owner: Owner,
    conf: &Portmap,
    addrs: &[IpNet],
    netns: Option<&Path>,
) -> Result<AttachmentRecord, CniError> {
    let mut mappings: Vec<(usize, PortMapping)> = Vec::new();
    for req in &conf.mappings {
        let families: Vec<&IpNet> = addrs
            .iter()
            .filter(|a| req.host_ip.is_none_or(|h| h.is_ipv4() == a.addr().is_ipv4()))
            .collect();
        if families.is_empty() {
            let why = match req.host_ip {
                Some(h) if h.is_ipv4() => format!("hostIP {h} is IPv4 but the container has no IPv4 address"),
                Some(h) => format!("hostIP {h} is IPv6 but the container has no IPv6 address"),
                None => "the container has no IP address in prevResult".to_owned(),
            };
            return Err(CniError::invalid_config(format!(
                "portMappings[{}]: {why}",
                req.index
            )));
        }
        for addr in families {
            let m = PortMapping {
                protocol: req.protocol,
                host_ip: req.host_ip,
                host_port: req.host_port,
                container_ip: addr.addr(),
                container_port: req.container_port,
            };
            if let Some((first, _)) = mappings.iter().find(|(_, o)| *o != m && o.conflicts_with(&m)) {
                return Err(CniError::invalid_config(format!(
                    "portMappings[{}] and portMappings[{first}] both want host port {}",
                    req.index,
                    m.host_side()
                )));
            }
            if !mappings.iter().any(|(_, o)| *o == m) {
                mappings.push((req.index, m));
            }
        }
    }
    let mut record = AttachmentRecord::with_source(owner, Source::Portmap);
    record.ports = Some(PortForwarding {
        mappings: mappings.into_iter().map(|(_, m)| m).collect(),
        subnets: addrs.iter().map(IpNet::trunc).collect(),
        snat: conf.snat,
        masq_all: conf.masq_all,
    });
    record.netns = netns.map(Path::to_path_buf);
    Ok(record)
}

/// One `conntrack -D` to run: flows of `protocol` whose original destination is `port` (and `host_ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    /// `ipv4` or `ipv6` (conntrack's `-f`; it defaults to IPv4 only).
    pub family: &'static str,
    /// UDP or SCTP (TCP flows end on their own).
    pub protocol: Protocol,
    /// Host port.
    pub port: u16,
    /// Host address, when the mapping has a specific one.
    pub host_ip: Option<IpAddr>,
}

impl Flush {
    /// The conntrack arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-D".to_owned(),
            "-f".to_owned(),
            self.family.to_owned(),
            "-p".to_owned(),
            self.protocol.as_str().to_owned(),
            "--orig-port-dst".to_owned(),
            self.port.to_string(),
        ];
        if let Some(ip) = self.host_ip {
            args.extend(["--orig-dst".to_owned(), ip.to_string()]);
        }
        args
    }
}

/// The UDP and SCTP flows to flush after mappings change (stale flows would keep going to the old target).
pub fn flushes(mappings: &[PortMapping]) -> Vec<Flush> {
    let mut out: Vec<Flush> = Vec::new();
    for m in mappings.iter().filter(|m| m.protocol != Protocol::Tcp) {
        let f = Flush {
            family: if m.container_ip.is_ipv4() { "ipv4" } else { "ipv6" },
            protocol: m.protocol,
            port: m.host_port,
            host_ip: m.specific_host_ip(),
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// The interface the main table routes `ip` through (longest prefix): the one that needs `route_localnet=1`
/// for 127.0.0.1 → container to leave the node.
pub fn route_oif(routes: &[RouteSpec], ip: IpAddr) -> Option<u32> {
    routes
        .iter()
        .filter(|r| r.table.unwrap_or(MAIN_TABLE) == MAIN_TABLE && r.dst.contains(&ip))
        .filter_map(|r| {
            r.oif
                .map(|oif| (r.dst.prefix_len(), r.priority.unwrap_or(0), oif))
        })
        .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)))
        .map(|(_, _, oif)| oif)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Requested;
    use corral_cni::{Interface, IpConfig};

    fn iface(name: &str, sandbox: &str) -> Interface {
        Interface {
            name: name.into(),
            sandbox: sandbox.into(),
            ..Default::default()
        }
    }

    fn ip(addr: &str, interface: Option<usize>) -> IpConfig {
        IpConfig {
            address: addr.parse().unwrap(),
            gateway: None,
            interface,
        }
    }

    fn prev() -> CniResult {
        CniResult {
            interfaces: vec![
                iface("br0", ""),
                iface("veth1", ""),
                iface("eth0", "/run/netns/c"),
            ],
            ips: vec![
                ip("10.88.0.2/16", Some(2)),
                ip("10.99.0.2/16", Some(1)),
                ip("fd00::2/64", Some(2)),
                ip("10.88.0.3/16", Some(2)),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn addresses_of_the_sandbox_interface_one_per_family() {
        let got: Vec<String> = container_addresses(&prev(), "eth0")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.88.0.2/16", "fd00::2/64"]);
        assert!(container_addresses(&prev(), "eth1").is_empty());
        let mut unindexed = prev();
        unindexed.ips = vec![ip("10.1.0.5/24", None)];
        assert_eq!(
            container_addresses(&unindexed, "eth0")[0].to_string(),
            "10.1.0.5/24"
        );
    }

    fn requested(index: usize, host_ip: Option<&str>, port: u16) -> Requested {
        Requested {
            index,
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: port,
            container_port: 80,
        }
    }

    fn conf(mappings: Vec<Requested>) -> Portmap {
        Portmap {
            mappings,
            snat: true,
            masq_all: false,
        }
    }

    fn addrs(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn wildcard_mapping_goes_to_every_family_host_ip_to_its_own() {
        let c = conf(vec![
            requested(0, None, 8080),
            requested(1, Some("fd50::1"), 9090),
        ]);
        let r = build_record(
            Owner::new("n", "c", "eth0"),
            &c,
            &addrs(&["10.88.0.2/16", "fd00::2/64"]),
            None,
        )
        .unwrap();
        let got: Vec<String> = r
            .mappings()
            .iter()
            .map(|m| format!("{} {}", m.host_side(), m.container_ip))
            .collect();
        assert_eq!(
            got,
            [
                "tcp 8080 on all IPv4 addresses 10.88.0.2",
                "tcp 8080 on all IPv6 addresses fd00::2",
                "tcp 9090 on fd50::1 fd00::2"
            ]
        );
        assert_eq!(r.source, Source::Portmap);
        assert_eq!(r.ports.as_ref().unwrap().subnets[0].to_string(), "10.88.0.0/16");
    }

    #[test]
    fn host_ip_family_without_container_address_is_code_7() {
        let c = conf(vec![
            requested(0, None, 8080),
            requested(1, Some("fd50::1"), 9090),
        ]);
        let e = build_record(Owner::new("n", "c", "eth0"), &c, &addrs(&["10.88.0.2/16"]), None).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("portMappings[1]") && e.msg.contains("no IPv6"),
            "{}",
            e.msg
        );
        let e = build_record(Owner::new("n", "c", "eth0"), &c, &[], None).unwrap_err();
        assert!(e.msg.contains("portMappings[0]"), "{}", e.msg);
    }

    #[test]
    fn two_entries_for_one_host_port_is_code_7_but_v4_and_v6_wildcards_are_not() {
        let two = addrs(&["10.88.0.2/16", "fd00::2/64"]);
        let c = conf(vec![
            requested(0, None, 8080),
            requested(1, Some("10.0.0.1"), 8080),
        ]);
        let e = build_record(Owner::new("n", "c", "eth0"), &c, &two, None).unwrap_err();
        assert!(e.msg.contains("portMappings[1] and portMappings[0]"), "{}", e.msg);
        let c = conf(vec![
            requested(0, Some("0.0.0.0"), 8080),
            requested(1, Some("::"), 8080),
        ]);
        assert_eq!(
            build_record(Owner::new("n", "c", "eth0"), &c, &two, None)
                .unwrap()
                .mappings()
                .len(),
            2
        );
        let dup = conf(vec![requested(0, None, 8080), requested(1, None, 8080)]);
        assert_eq!(
            build_record(Owner::new("n", "c", "eth0"), &dup, &two, None)
                .unwrap()
                .mappings()
                .len(),
            2
        );
    }

    #[test]
    fn flushes_cover_udp_and_sctp_per_family_with_host_ip() {
        let m = |protocol, host_ip: Option<&str>, ctr: &str| PortMapping {
            protocol,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 53,
            container_ip: ctr.parse().unwrap(),
            container_port: 53,
        };
        let got: Vec<String> = flushes(&[
            m(Protocol::Tcp, None, "10.0.0.2"),
            m(Protocol::Udp, None, "10.0.0.2"),
            m(Protocol::Udp, None, "fd00::2"),
            m(Protocol::Sctp, Some("10.1.1.1"), "10.0.0.2"),
            m(Protocol::Sctp, Some("0.0.0.0"), "10.0.0.2"),
        ])
        .iter()
        .map(|f| f.args().join(" "))
        .collect();
        assert_eq!(
            got,
            [
                "-D -f ipv4 -p udp --orig-port-dst 53",
                "-D -f ipv6 -p udp --orig-port-dst 53",
                "-D -f ipv4 -p sctp --orig-port-dst 53 --orig-dst 10.1.1.1",
                "-D -f ipv4 -p sctp --orig-port-dst 53",
            ]
        );
    }

    #[test]
    fn route_oif_takes_the_longest_main_table_prefix() {
        let route = |dst: &str, oif: u32, table: u32| RouteSpec {
            oif: Some(oif),
            table: Some(table),
            ..RouteSpec::to(dst.parse().unwrap())
        };
        let routes = [
            route("0.0.0.0/0", 1, MAIN_TABLE),
            route("10.88.0.0/16", 7, MAIN_TABLE),
            route("10.88.0.0/24", 9, 100),
        ];
        assert_eq!(route_oif(&routes, "10.88.0.5".parse().unwrap()), Some(7));
        assert_eq!(route_oif(&routes, "192.0.2.1".parse().unwrap()), Some(1));
        assert_eq!(route_oif(&routes[1..], "192.0.2.1".parse().unwrap()), None);
    }
}
