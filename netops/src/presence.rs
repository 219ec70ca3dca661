//! Reading back what a plugin configured: are these addresses on a link, and these routes in the netns. CHECK
//! uses it to compare the kernel with a prevResult; which addresses and routes to look for is the caller's.

use crate::{IpFamily, Netlink, Result};
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// The first expected object [`Netlink::first_missing`] did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// An address absent from the link.
    Address(IpNet),
    /// A route (destination) absent, or present with another next hop.
    Route(IpNet),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Address(a) => write!(f, "address {a} is missing from the container interface"),
            Missing::Route(dst) => write!(f, "route to {dst} is missing from the container"),
        }
    }
}

impl Netlink {
    /// The first of `addresses` not on link `index`, then the first of `routes` (destination and, when given,
    /// next hop) not in any table of this netns; `None` when everything is there. Only the families asked for
    /// are dumped.
    pub fn first_missing(
        &self,
        index: u32,
        addresses: &[IpNet],
        routes: &[(IpNet, Option<IpAddr>)],
    ) -> Result<Option<Missing>> {
        if !addresses.is_empty() {
            let present = self.addresses(index)?;
            if let Some(a) = addresses.iter().find(|a| !present.contains(a)) {
                return Ok(Some(Missing::Address(*a)));
            }
        }
        for (family, v4) in [(IpFamily::V4, true), (IpFamily::V6, false)] {
            let wanted: Vec<&(IpNet, Option<IpAddr>)> = routes
                .iter()
                .filter(|(dst, _)| dst.addr().is_ipv4() == v4)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let present = self.routes(family)?;
            let missing = wanted.iter().find(|(dst, gw)| {
                !present
                    .iter()
                    .any(|k| k.dst.trunc() == dst.trunc() && (gw.is_none() || k.gateway == *gw))
            });
            if let Some((dst, _)) = missing {
                return Ok(Some(Missing::Route(*dst)));
            }
        }
        Ok(None)
    }
}
