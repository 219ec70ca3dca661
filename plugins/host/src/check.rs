//! CHECK: the attachment still matches its prevResult: the device is in the container under CNI_IFNAME with
//! the recorded MAC, up, with every address and route of the prevResult; then the IPAM plugin's own CHECK.
//! A difference is code 101 naming the object.

use crate::config;
use crate::effects::{net, open_container_netns, sandbox};
use corral_cni::{codes, invoke, CniError, CniResult, Command, Request};
use corral_nat::model::format_mac;
use corral_netops::Netlink;

fn mismatch(m: String) -> CniError {
    CniError::new(codes::CHECK_MISMATCH, m)
}

/// Runs CHECK.
pub fn check(req: &Request) -> Result<(), CniError> {
    let cfg = config::load(req)?;
    cfg.require_selector()?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("CHECK needs a prevResult"))?;
    let ctr_ns = open_container_netns(req)?;
    let ctr = Netlink::in_netns(&ctr_ns).map_err(net("netlink in container"))?;
    let sandbox = sandbox(req);
    let (idx, iface) = prev.sandbox_interface(&req.ifname, &sandbox)?;
    let link = ctr
        .link_by_name(&req.ifname)
        .map_err(net("container link"))?
        .ok_or_else(|| mismatch(format!("interface \"{}\" is missing from {sandbox}", req.ifname)))?;
    let mac = link.mac.map(|m| format_mac(&m));
    if !iface.mac.is_empty() && mac.as_deref() != Some(iface.mac.to_lowercase().as_str()) {
        return Err(mismatch(format!(
            "interface \"{}\" has MAC {}, prevResult says {}",
            req.ifname,
            mac.unwrap_or_else(|| "none".into()),
            iface.mac
        )));
    }
    if !link.up {
        return Err(mismatch(format!("interface \"{}\" is down", req.ifname)));
    }
    check_addresses_and_routes(&ctr, &prev, idx, link.index)?;
    if let Some(t) = &cfg.ipam_type {
        invoke::delegate_void(t, Command::Check, req, &corral_ipam::builtins())?;
    }
    Ok(())
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
