//! DEL, STATUS and GC. DEL keeps going past failures and reports them together; a missing netns, link or
//! record is success, so DEL twice succeeds and DEL after the netns is gone still releases the IP and the NAT
//! elements (the reference leaks the latter).

use crate::config;
use crate::effects::{nat, nat_manager, net, owner};
use crate::teardown;
use corral_cni::error::combine;
use corral_cni::{failpoint, invoke, CniError, Command, Request};
use corral_nat::Source;
use corral_netops::open_netns;

/// Runs DEL: the container link first (down and out of the way, so the address can be handed out again at
/// once), then the IPAM release and the NAT entries.
pub fn del(req: &Request) -> Result<(), CniError> {
    let br = config::load(req)?;
    let mut errors: Vec<CniError> = Vec::new();
    if let Some(path) = &req.netns {
        match open_netns(path) {
            Ok(_) if req.netns_is_own() => {
                tracing::warn!(netns = %path.display(), "CNI_NETNS is the plugin's own netns; not deleting links there")
            }
            Ok(ns) => {
                let removed = teardown::remove_container_link(&ns, path, &req.ifname, &req.env);
                if let Err(e) = removed.or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) }) {
                    errors.push(net("delete container link")(e));
                }
            }
            Err(e) if e.is_not_found() => {
                tracing::debug!(netns = %path.display(), "netns gone; links went with it")
            }
            Err(e) => errors.push(net("open netns")(e)),
        }
    }
    failpoint::hit("bridge-del-after-link");
    if let Some(t) = &br.ipam_type {
        if let Err(e) = invoke::delegate_void(t, Command::Del, req, &corral_ipam::builtins()) {
            errors.push(e.context("IPAM DEL"));
        }
    }
    failpoint::hit("bridge-del-after-ipam");
    if let Err(e) = nat_manager(req).del(&owner(req), Source::Bridge) {
        errors.push(nat(e).context("NAT cleanup"));
    }
    failpoint::hit("bridge-del-after-nat");
    combine(errors)
}

/// STATUS: the IPAM plugin's STATUS, and nftables usable when the config needs it (code 50 otherwise).
pub fn status(req: &Request) -> Result<(), CniError> {
    let br = config::load(req)?;
    if let Some(t) = &br.ipam_type {
        invoke::delegate_void(t, Command::Status, req, &corral_ipam::builtins())?;
    }
    if br.ip_masq || br.macspoofchk {
        nat_manager(req)
            .status()
            .map_err(|e| CniError::not_available(format!("nftables: {e}")))?;
    }
    Ok(())
}

/// GC: the IPAM plugin's GC, and NAT records of this network whose attachment is not valid any more.
pub fn gc(req: &Request) -> Result<(), CniError> {
    let br = config::load(req)?;
    let mut errors = Vec::new();
    if let Some(t) = &br.ipam_type {
        if let Err(e) = invoke::delegate_void(t, Command::Gc, req, &corral_ipam::builtins()) {
            errors.push(e.context("IPAM GC"));
        }
    }
    let valid = req.conf.gc_valid_pairs();
    if let Err(e) = nat_manager(req).gc(&req.conf.name, Source::Bridge, &valid) {
        errors.push(nat(e).context("NAT GC"));
    }
    combine(errors)
}
