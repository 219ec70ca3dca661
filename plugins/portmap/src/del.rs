//! DEL, STATUS and GC. DEL works from the record alone: no prevResult, no `portMappings` and no netns needed
//! (the reference leaks its rules when a runtime omits `portMappings` on DEL), and DEL twice succeeds.

use corral_cni::{CniError, Request};
use corral_nat::Source;

use crate::config;
use crate::effects::{flush_conntrack, nat, nat_manager, owner};
use crate::plan::flushes;

/// Runs DEL: removes the attachment's mappings, then flushes their UDP/SCTP flows.
pub fn del(req: &Request) -> Result<(), CniError> {
    if let Some(record) = nat_manager(req).del(&owner(req), Source::Portmap).map_err(nat)? {
        flush_conntrack(&flushes(record.mappings()));
    }
    Ok(())
}

/// STATUS: the config is valid and nft is usable (code 50 otherwise).
pub fn status(req: &Request) -> Result<(), CniError> {
    config::load(req)?;
    nat_manager(req)
        .status()
        .map_err(|e| CniError::not_available(format!("nftables: {e}")))
}

/// GC: port mappings of this network whose attachment is not in `cni.dev/valid-attachments`.
pub fn gc(req: &Request) -> Result<(), CniError> {
    let valid: Vec<(String, String)> = req
        .conf
        .gc_valid_attachments()
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect();
    nat_manager(req)
        .gc(&req.conf.name, Source::Portmap, &valid)
        .map_err(|e| nat(e).context("NAT GC"))
}
