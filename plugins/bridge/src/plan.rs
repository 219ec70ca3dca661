//! Pure planning: from the validated config and the IPAM result, what goes on the bridge, what goes in the
//! container, which NAT entries to record, and the result to return.

use crate::config::Bridge;
use corral_cni::{CniError, CniResult, Dns, Interface, IpConfig, Route};
use corral_nat::model::format_mac;
use ipnet::IpNet;
use std::net::IpAddr;

/// Everything ADD applies after the links exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrPlan {
    /// Addresses (gateway/prefix) to ensure on the bridge.
    pub bridge_addrs: Vec<IpNet>,
    /// Addresses for the container interface.
    pub container_addrs: Vec<IpNet>,
    /// Routes in the container, each with its resolved next hop.
    pub container_routes: Vec<Route>,
    /// Whether IPv4 / IPv6 forwarding must be on in the node.
    pub forward_v4: bool,
    /// See `forward_v4`.
    pub forward_v6: bool,
    /// The IP configs as they go into the result (gateways filled in).
    pub ips: Vec<IpConfig>,
    /// The routes as they go into the result.
    pub result_routes: Vec<Route>,
}

/// The first address of a subnet after the network address: the reference's default gateway.
pub fn default_gateway(net: &IpNet) -> Option<IpAddr> {
    let trunc = net.trunc();
    let next = match trunc.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(1)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(1)?.into()),
    };
    trunc.contains(&next).then_some(next)
}

fn default_route_dst(v4: bool) -> IpNet {
    if v4 {
        IpNet::V4(ipnet::Ipv4Net::default())
    } else {
        IpNet::V6(ipnet::Ipv6Net::default())
    }
}

/// Plans addresses and routes (reference semantics of isGateway / isDefaultGateway).
pub fn plan_addresses(bridge: &Bridge, ipam: &CniResult) -> Result<AddrPlan, CniError> {
    let mut ips = ipam.ips.clone();
    let mut bridge_addrs = Vec::new();
    for ip in &mut ips {
        ip.interface = Some(2);
        if bridge.is_gateway {
            if ip.gateway.is_none() {
                ip.gateway = default_gateway(&ip.address);
            }
            if let Some(gw) = ip.gateway {
                let net = IpNet::new(gw, ip.address.prefix_len())
                    .map_err(|e| CniError::invalid_config(format!("gateway {gw}")).with_details(e))?;
                if !bridge_addrs.contains(&net) {
                    bridge_addrs.push(net);
                }
            }
        }
    }
    let gateway_of = |v4: bool| {
        ips.iter()
            .filter(|i| i.address.addr().is_ipv4() == v4)
            .find_map(|i| i.gateway)
    };

    let mut result_routes = ipam.routes.clone();
    if bridge.is_default_gateway {
        for v4 in [true, false] {
            let Some(gw) = gateway_of(v4) else { continue };
            let dst = default_route_dst(v4);
            match ipam.routes.iter().find(|r| r.dst == dst) {
                Some(r) if r.gw.is_some_and(|g| g != gw) => {
                    return Err(CniError::invalid_config(format!(
                        "network \"{}\": isDefaultGateway ineffective because IPAM sets default route via {}",
                        bridge.network,
                        r.gw.map(|g| g.to_string()).unwrap_or_default()
                    )))
                }
                Some(_) => {}
                None => result_routes.push(Route::new(dst, Some(gw))),
            }
        }
    }
    // In the container, a route without a gateway goes via the gateway of its family.
    let container_routes = CniResult {
        ips: ips.clone(),
        routes: result_routes.clone(),
        ..Default::default()
    }
    .routes_via_family_gateways();
    let has = |v4: bool| ips.iter().any(|i| i.address.addr().is_ipv4() == v4);
    Ok(AddrPlan {
        bridge_addrs,
        container_addrs: ips.iter().map(|i| i.address).collect(),
        container_routes,
        forward_v4: bridge.is_gateway && has(true),
        forward_v6: bridge.is_gateway && has(false),
        ips,
        result_routes,
    })
}

/// Whether an existing bridge address conflicts with the one we want (reference `ensureAddr`): any other
/// IPv4 address does; an IPv6 one does when the subnets overlap. Link-local addresses never do.
pub fn conflicts(existing: &IpNet, wanted: &IpNet) -> bool {
    if existing == wanted || existing.addr().is_ipv4() != wanted.addr().is_ipv4() {
        return false;
    }
    match existing.addr() {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => {
            let link_local = (a.segments()[0] & 0xffc0) == 0xfe80;
            !link_local && (existing.contains(&wanted.addr()) || wanted.contains(&existing.addr()))
        }
    }
}

/// Links as they go into the result.
#[derive(Debug, Clone)]
pub struct Links {
    /// Bridge name and MAC.
    pub bridge: (String, [u8; 6]),
    /// Host veth name and MAC.
    pub host: (String, [u8; 6]),
    /// Container interface name, MAC, netns path.
    pub container: (String, [u8; 6], String),
    /// MTU of the container interface.
    pub mtu: Option<u32>,
}

/// Builds the ADD result: interfaces [bridge, host veth, container], IPs on interface 2, and the config's
/// `dns` in place of IPAM's when set (reference behaviour since v1.2.0).
pub fn build_result(links: &Links, plan: &AddrPlan, ipam_dns: &Dns, conf_dns: Option<&Dns>) -> CniResult {
    let iface = |name: &str, mac: &[u8; 6], sandbox: &str| Interface {
        name: name.to_string(),
        mac: format_mac(mac),
        mtu: links.mtu,
        sandbox: sandbox.to_string(),
        ..Default::default()
    };
    CniResult {
        interfaces: vec![
            iface(&links.bridge.0, &links.bridge.1, ""),
            iface(&links.host.0, &links.host.1, ""),
            iface(&links.container.0, &links.container.1, &links.container.2),
        ],
        ips: plan.ips.clone(),
        routes: plan.result_routes.clone(),
        dns: conf_dns
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| ipam_dns.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(gw: bool, default_gw: bool) -> Bridge {
        Bridge {
            network: "n".into(),
            name: "cni0".into(),
            is_gateway: gw || default_gw,
            is_default_gateway: default_gw,
            force_address: false,
            ip_masq: false,
            mtu: None,
            hairpin: false,
            promisc: false,
            vlan: None,
            trunk: vec![],
            preserve_default_vlan: false,
            macspoofchk: false,
            enable_dad: false,
            disable_container_interface: false,
            port_isolation: false,
            mac: None,
            ipam_type: Some("host-local".into()),
        }
    }

    fn ipam(ips: &[(&str, Option<&str>)], routes: &[(&str, Option<&str>)]) -> CniResult {
        CniResult {
            ips: ips
                .iter()
                .map(|(a, g)| IpConfig {
                    address: a.parse().unwrap(),
                    gateway: g.map(|g| g.parse().unwrap()),
                    interface: None,
                })
                .collect(),
            routes: routes
                .iter()
                .map(|(d, g)| Route::new(d.parse().unwrap(), g.map(|g| g.parse().unwrap())))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn gateway_goes_on_bridge_with_subnet_prefix() {
        let p = plan_addresses(
            &bridge(true, false),
            &ipam(&[("10.1.0.5/24", Some("10.1.0.1"))], &[]),
        )
        .unwrap();
        assert_eq!(p.bridge_addrs, vec!["10.1.0.1/24".parse::<IpNet>().unwrap()]);
        assert_eq!(p.container_addrs, vec!["10.1.0.5/24".parse::<IpNet>().unwrap()]);
        assert!(p.forward_v4 && !p.forward_v6);
        assert_eq!(p.ips[0].interface, Some(2));
        assert!(p.result_routes.is_empty());
    }

    #[test]
    fn missing_gateway_is_first_address_when_gateway() {
        let p = plan_addresses(&bridge(true, false), &ipam(&[("fd00:1::9/64", None)], &[])).unwrap();
        assert_eq!(p.ips[0].gateway, Some("fd00:1::1".parse().unwrap()));
        assert_eq!(p.bridge_addrs, vec!["fd00:1::1/64".parse::<IpNet>().unwrap()]);
        assert!(p.forward_v6);
    }

    #[test]
    fn no_gateway_means_nothing_on_bridge() {
        let p = plan_addresses(
            &bridge(false, false),
            &ipam(&[("10.1.0.5/24", Some("10.1.0.1"))], &[]),
        )
        .unwrap();
        assert!(p.bridge_addrs.is_empty());
        assert!(!p.forward_v4);
    }

    #[test]
    fn default_gateway_adds_default_routes_per_family() {
        let r = ipam(
            &[("10.1.0.5/24", Some("10.1.0.1")), ("fd00::5/64", Some("fd00::1"))],
            &[],
        );
        let p = plan_addresses(&bridge(false, true), &r).unwrap();
        let dsts: Vec<String> = p
            .result_routes
            .iter()
            .map(|r| format!("{} via {:?}", r.dst, r.gw))
            .collect();
        assert_eq!(
            dsts,
            vec!["0.0.0.0/0 via Some(10.1.0.1)", "::/0 via Some(fd00::1)"]
        );
    }

    #[test]
    fn default_gateway_keeps_ipam_default_route_and_rejects_conflict() {
        let r = ipam(&[("10.1.0.5/24", Some("10.1.0.1"))], &[("0.0.0.0/0", None)]);
        let p = plan_addresses(&bridge(false, true), &r).unwrap();
        assert_eq!(p.result_routes.len(), 1);
        assert_eq!(p.container_routes[0].gw, Some("10.1.0.1".parse().unwrap()));
        let r = ipam(
            &[("10.1.0.5/24", Some("10.1.0.1"))],
            &[("0.0.0.0/0", Some("10.1.0.254"))],
        );
        let e = plan_addresses(&bridge(false, true), &r).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("10.1.0.254"));
    }

    #[test]
    fn routes_without_gateway_use_family_gateway_in_container_only() {
        let r = ipam(&[("10.1.0.5/24", Some("10.1.0.1"))], &[("192.168.0.0/16", None)]);
        let p = plan_addresses(&bridge(false, false), &r).unwrap();
        assert_eq!(p.result_routes[0].gw, None);
        assert_eq!(p.container_routes[0].gw, Some("10.1.0.1".parse().unwrap()));
    }

    #[test]
    fn address_conflicts_follow_reference_rules() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(!conflicts(&n("10.1.0.1/24"), &n("10.1.0.1/24")));
        assert!(conflicts(&n("10.2.0.1/24"), &n("10.1.0.1/24")));
        assert!(!conflicts(&n("fd00:2::1/64"), &n("fd00:1::1/64")));
        assert!(conflicts(&n("fd00:1::2/64"), &n("fd00:1::1/64")));
        assert!(!conflicts(&n("fe80::1/64"), &n("fe80::2/64")));
        assert!(!conflicts(&n("10.2.0.1/24"), &n("fd00:1::1/64")));
    }

    #[test]
    fn result_prefers_config_dns() {
        let links = Links {
            bridge: ("cni0".into(), [2, 0, 0, 0, 0, 1]),
            host: ("veth1".into(), [2, 0, 0, 0, 0, 2]),
            container: ("eth0".into(), [2, 0, 0, 0, 0, 3], "/run/netns/c".into()),
            mtu: Some(1400),
        };
        let plan = plan_addresses(&bridge(true, false), &ipam(&[("10.1.0.5/24", None)], &[])).unwrap();
        let ipam_dns = Dns {
            nameservers: vec!["1.1.1.1".into()],
            ..Default::default()
        };
        let conf_dns = Dns {
            nameservers: vec!["10.1.0.1".into()],
            ..Default::default()
        };
        let r = build_result(&links, &plan, &ipam_dns, Some(&conf_dns));
        assert_eq!(r.dns, conf_dns);
        assert_eq!(r.interfaces[2].sandbox, "/run/netns/c");
        assert_eq!(r.interfaces[1].mac, "02:00:00:00:00:02");
        assert_eq!(build_result(&links, &plan, &ipam_dns, None).dns, ipam_dns);
        assert_eq!(
            build_result(&links, &plan, &ipam_dns, Some(&Dns::default())).dns,
            ipam_dns
        );
    }
}
