//! Routes as plain data ([`RouteSpec`]): add (idempotent), delete (tolerates absence), list for CHECK.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteScope, RouteType, RouteVia,
};
use rtnetlink::RouteMessageBuilder;

use crate::error::{NetopsError, Result};
use crate::netlink::Netlink;

/// The main routing table's id.
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;
/// Scope of routes to hosts on the directly attached link (`scope link`).
pub const SCOPE_LINK: u8 = 253;

/// An address family, for listing routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// One unicast route, as plain data.
///
/// When adding, `None` means "kernel default" (table main, scope universe, no metric). Routes read back by
/// [`Netlink::routes`] always have `table` and `scope` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination; host bits are ignored (10.1.2.3/24 means 10.1.2.0/24).
    pub dst: IpNet,
    /// Next hop; `None` for a route straight out of `oif`.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Path MTU metric (RTAX_MTU).
    pub mtu: Option<u32>,
    /// Advertised MSS metric (RTAX_ADVMSS).
    pub advmss: Option<u32>,
    /// Route priority (metric).
    pub priority: Option<u32>,
    /// Routing table id.
    pub table: Option<u32>,
    /// Route scope (0 universe, 253 link, 254 host).
    pub scope: Option<u8>,
}

impl RouteSpec {
    /// A route to `dst` with every other field unset.
    pub fn to(dst: IpNet) -> Self {
        Self {
            dst,
            gateway: None,
            oif: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    /// The RTM_NEWROUTE / RTM_DELROUTE message for this route.
    pub(crate) fn to_message(&self) -> Result<RouteMessage> {
        let dst = self.dst.trunc();
        // rtnetlink does not export its InvalidRouteMessage type, so keep only its text.
        let invalid = |e: String| NetopsError::Invalid {
            what: "route",
            value: format!("{dst}: {e}"),
        };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(gw) = self.gateway {
            b = b.gateway(gw).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(priority) = self.priority {
            b = b.priority(priority);
        }
        if let Some(table) = self.table {
            b = b.table_id(table);
        }
        if let Some(scope) = self.scope {
            b = b.scope(RouteScope::from(scope));
        }
        let mut msg = b.build();
        let mut metrics = Vec::new();
        if let Some(mtu) = self.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(advmss) = self.advmss {
            metrics.push(RouteMetric::Advmss(advmss));
        }
        if !metrics.is_empty() {
            msg.attributes.push(RouteAttribute::Metrics(metrics));
        }
        Ok(msg)
    }

    /// Decodes a kernel route message; `None` for non-unicast routes (local, broadcast, multicast, ...).
    pub(crate) fn from_message(msg: &RouteMessage) -> Option<Self> {
        if msg.header.kind != RouteType::Unicast {
            return None;
        }
        let mut dst = None;
        let mut spec = RouteSpec::to(default_net(msg)?);
        spec.table = Some(u32::from(msg.header.table));
        spec.scope = Some(u8::from(msg.header.scope));
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(addr) => dst = route_ip(addr),
                RouteAttribute::Gateway(addr) => spec.gateway = route_ip(addr),
                RouteAttribute::Via(RouteVia::Inet6(v6)) => spec.gateway = Some(IpAddr::V6(*v6)),
                RouteAttribute::Via(RouteVia::Inet(v4)) => spec.gateway = Some(IpAddr::V4(*v4)),
                RouteAttribute::Oif(oif) => spec.oif = Some(*oif),
                RouteAttribute::Priority(p) => spec.priority = Some(*p),
                RouteAttribute::Table(t) => spec.table = Some(*t),
                RouteAttribute::Metrics(metrics) => {
                    for m in metrics {
                        match m {
                            RouteMetric::Mtu(v) => spec.mtu = Some(*v),
                            RouteMetric::Advmss(v) => spec.advmss = Some(*v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(ip) = dst {
            spec.dst = IpNet::new(ip, msg.header.destination_prefix_length).ok()?;
        }
        Some(spec)
    }
}

/// 0.0.0.0/0 or ::/0 for the message's family; a route without RTA_DST is a default route.
fn default_net(msg: &RouteMessage) -> Option<IpNet> {
    use rtnetlink::packet_route::AddressFamily;
    let ip = match msg.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    IpNet::new(ip, 0).ok()
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Netlink {
    /// Adds a route; an identical route already present is success.
    pub fn add_route(&self, route: &RouteSpec) -> Result<()> {
        let msg = route.to_message()?;
        tracing::debug!(dst = %route.dst, gw = ?route.gateway, oif = ?route.oif, "add route");
        match self.block_on(self.handle().route().add(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetopsError::netlink("add route", format!("to {}", route.dst), e);
                if err.is_exists() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Deletes a route; absent is success.
    pub fn delete_route(&self, route: &RouteSpec) -> Result<()> {
        let msg = route.to_message()?;
        tracing::debug!(dst = %route.dst, gw = ?route.gateway, oif = ?route.oif, "delete route");
        match self.block_on(self.handle().route().del(msg).execute()) {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetopsError::netlink("delete route", format!("to {}", route.dst), e);
                if err.is_not_found() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Every unicast route of one family, from every table the kernel dumps (main and others).
    pub fn routes(&self, family: IpFamily) -> Result<Vec<RouteSpec>> {
        let query = match family {
            IpFamily::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpFamily::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let req = self.handle().route().get(query).execute();
        let msgs: Vec<RouteMessage> = self
            .block_on(req.try_collect())
            .map_err(|e| NetopsError::netlink("list", "routes", e))?;
        Ok(msgs.iter().filter_map(RouteSpec::from_message).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::AddressFamily;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn message_round_trips_every_field() {
        let spec = RouteSpec {
            dst: net("10.1.0.0/16"),
            gateway: Some("10.88.0.1".parse().unwrap()),
            oif: Some(3),
            mtu: Some(1400),
            advmss: Some(1360),
            priority: Some(100),
            table: Some(1000),
            scope: Some(0),
        };
        let msg = spec.to_message().unwrap();
        assert_eq!(msg.header.address_family, AddressFamily::Inet);
        assert_eq!(RouteSpec::from_message(&msg), Some(spec));
    }

    #[test]
    fn host_bits_of_destination_are_dropped() {
        let msg = RouteSpec::to(net("10.1.2.3/24")).to_message().unwrap();
        let back = RouteSpec::from_message(&msg).unwrap();
        assert_eq!(back.dst, net("10.1.2.0/24"));
        assert_eq!(back.table, Some(MAIN_TABLE));
        assert_eq!(back.scope, Some(0));
    }

    #[test]
    fn default_route_without_dst_attribute_decodes_to_zero_net() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.kind = RouteType::Unicast;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet6(
            "fe80::1".parse().unwrap(),
        )));
        let spec = RouteSpec::from_message(&msg).unwrap();
        assert_eq!(spec.dst, net("::/0"));
        assert_eq!(spec.gateway, Some("fe80::1".parse().unwrap()));
    }

    #[test]
    fn non_unicast_routes_are_skipped() {
        let mut msg = RouteSpec::to(net("10.0.0.1/32")).to_message().unwrap();
        msg.header.kind = RouteType::Local;
        assert_eq!(RouteSpec::from_message(&msg), None);
    }

    #[test]
    fn mixed_family_gateway_is_rejected_or_via() {
        // IPv4 destination through an IPv6 next hop is RTA_VIA (RFC 5549); the other way round is invalid.
        let v4_via_v6 = RouteSpec {
            gateway: Some("fe80::1".parse().unwrap()),
            ..RouteSpec::to(net("0.0.0.0/0"))
        };
        let msg = v4_via_v6.to_message().unwrap();
        assert_eq!(RouteSpec::from_message(&msg).unwrap().gateway, v4_via_v6.gateway);
        let v6_via_v4 = RouteSpec {
            gateway: Some("10.0.0.1".parse().unwrap()),
            ..RouteSpec::to(net("::/0"))
        };
        assert_eq!(v6_via_v4.to_message().unwrap_err().code(), 7);
    }
}
