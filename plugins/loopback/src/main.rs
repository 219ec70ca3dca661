//! The `loopback` CNI plugin: brings `lo` up in the container (whatever CNI_IFNAME says, as the reference)
//! and returns its addresses, or passes a prevResult through unchanged.

use corral_cni::{codes, CniError, CniResult, Interface, IpConfig, Plugin, Request};
use corral_netops::{open_netns, Netlink, NetopsError};
use ipnet::IpNet;

const LO: &str = "lo";

struct Loopback;

fn net(what: &'static str) -> impl Fn(NetopsError) -> CniError {
    move |e| CniError::new(e.code(), format!("{what}: {e}"))
}

fn loopback_in(req: &Request) -> Result<Netlink, CniError> {
    let path = req.require_netns()?;
    let ns =
        open_netns(path).map_err(|e| CniError::invalid_env(format!("CNI_NETNS {}: {e}", path.display())))?;
    Netlink::in_netns(&ns).map_err(net("netlink in container"))
}

/// The result when there is no prevResult: `lo` with its first IPv4 and IPv6 address.
fn own_result(req: &Request, addrs: &[IpNet]) -> CniResult {
    let first = |v4: bool| addrs.iter().find(|a| a.addr().is_ipv4() == v4).copied();
    CniResult {
        interfaces: vec![Interface {
            name: LO.into(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: req
                .netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..Default::default()
        }],
        ips: [first(true), first(false)]
            .into_iter()
            .flatten()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: Some(0),
            })
            .collect(),
        ..Default::default()
    }
}

impl Plugin for Loopback {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let ctr = loopback_in(req)?;
        let lo = ctr
            .link_by_name(LO)
            .map_err(net("lo"))?
            .ok_or_else(|| CniError::internal("no lo in netns"))?;
        ctr.set_link_up(lo.index).map_err(net("set lo up"))?;
        let addrs = ctr.addresses(lo.index).map_err(net("lo addresses"))?;
        if let Some(bad) = addrs.iter().find(|a| !a.addr().is_loopback()) {
            return Err(CniError::invalid_config(format!(
                "loopback interface has non-loopback address {bad}"
            )));
        }
        match req.prev_result()? {
            Some(prev) => Ok(prev),
            None => Ok(own_result(req, &addrs)),
        }
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let Some(path) = &req.netns else { return Ok(()) };
        let ns = match open_netns(path) {
            Ok(ns) => ns,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(net("open netns")(e)),
        };
        if req.netns_is_own() {
            return Ok(());
        }
        let ctr = Netlink::in_netns(&ns).map_err(net("netlink in container"))?;
        match ctr.link_by_name(LO).map_err(net("lo"))? {
            Some(lo) => ctr.set_link_down(lo.index).map_err(net("set lo down")),
            None => Ok(()),
        }
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let ctr = loopback_in(req)?;
        match ctr.link_by_name(LO).map_err(net("lo"))? {
            Some(lo) if lo.up => Ok(()),
            _ => Err(CniError::new(codes::CHECK_MISMATCH, "loopback interface is down")),
        }
    }
}

const ABOUT: &str = concat!("CNI loopback plugin (corral ", env!("CARGO_PKG_VERSION"), ")");
const HELP: &str =
    "Brings the container's lo up. No config keys besides the common ones. Documentation: docs/loopback.md.";

corral_cni::plugin_note!();

fn main() {
    corral_cni::skel::main(&Loopback, ABOUT, HELP)
}
