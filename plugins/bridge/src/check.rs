//! CHECK: the attachment still matches its prevResult: bridge, both veth ends, MAC, addresses, routes, NAT
//! elements, and the IPAM plugin's own CHECK. A difference is code 101 naming the object.

use crate::config::{self, Bridge};
use crate::effects::{nat, nat_manager, net, open_container_netns, owner};
use corral_cni::{codes, invoke, CniError, CniResult, Command, Request};
use corral_nat::model::format_mac;
use corral_nat::Source;
use corral_netops::Netlink;

/// Runs CHECK.
pub fn check(req: &Request) -> Result<(), CniError> {
    let br = config::load(req)?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("CHECK needs a prevResult"))?;
    if let Some(t) = &br.ipam_type {
        invoke::delegate_void(t, Command::Check, req, &corral_ipam::builtins())?;
    }
    let host = Netlink::current().map_err(net("netlink"))?;
    let ctr_ns = open_container_netns(req)?;
    let ctr = Netlink::in_netns(&ctr_ns).map_err(net("netlink in container"))?;
    let mismatch = |m: String| CniError::new(codes::CHECK_MISMATCH, m);

    let bridge = host
        .link_by_name(&br.name)
        .map_err(net("bridge"))?
        .filter(|l| l.is_bridge())
        .ok_or_else(|| mismatch(format!("bridge \"{}\" is missing or not a bridge", br.name)))?;
    let sandbox = req
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (ctr_idx, ctr_iface) = prev.sandbox_interface(&req.ifname, &sandbox)?;
    let link = ctr
        .link_by_name(&req.ifname)
        .map_err(net("container link"))?
        .ok_or_else(|| mismatch(format!("interface \"{}\" is missing from {sandbox}", req.ifname)))?;
    if !ctr_iface.mac.is_empty() && link.mac.map(|m| format_mac(&m)) != Some(ctr_iface.mac.to_lowercase()) {
        return Err(mismatch(format!(
            "interface \"{}\" has MAC {:?}, prevResult says {}",
            req.ifname,
            link.mac.map(|m| format_mac(&m)),
            ctr_iface.mac
        )));
    }
    for host_if in prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.is_empty() && i.name != br.name)
    {
        let l = host.link_by_name(&host_if.name).map_err(net("host veth"))?;
        if l.as_ref().and_then(|l| l.master) != Some(bridge.index) {
            return Err(mismatch(format!(
                "host interface \"{}\" is missing or not on bridge \"{}\"",
                host_if.name, br.name
            )));
        }
    }
    check_addresses_and_routes(&ctr, &prev, ctr_idx, link.index)?;
    check_nat(req, &br)
}

/// Every address of the container interface and every route, as ADD installed them (a route without a
/// gateway goes via its family's gateway), is in the kernel; a difference is code 101 naming it.
fn check_addresses_and_routes(
    ctr: &Netlink,
    prev: &CniResult,
    iface: usize,
    index: u32,
) -> Result<(), CniError> {
    let routes: Vec<_> = prev
        .routes_via_family_gateways()
        .iter()
        .map(|r| (r.dst, r.gw))
        .collect();
    match ctr
        .first_missing(index, &prev.addresses_of(iface), &routes)
        .map_err(net("container addresses and routes"))?
    {
        Some(missing) => Err(CniError::new(codes::CHECK_MISMATCH, missing.to_string())),
        None => Ok(()),
    }
}

fn check_nat(req: &Request, br: &Bridge) -> Result<(), CniError> {
    if br.ip_masq || br.macspoofchk {
        nat_manager(req).check(&owner(req), Source::Bridge).map_err(|e| {
            let e = nat(e);
            CniError {
                code: if e.code == codes::INTERNAL {
                    codes::CHECK_MISMATCH
                } else {
                    e.code
                },
                ..e
            }
        })?;
    }
    Ok(())
}
